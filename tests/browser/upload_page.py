#!/usr/bin/env python3
"""Drives the upload page in headless Chromium (Debian's chromium +
chromedriver, no network): picks a photo, waits for the label, screenshots;
drops a PNG with a drag-and-drop event; picks a non-image and reads the error.
Prints one JSON object with what the page showed.

    upload_page.py BASE_URL PHOTO PNG NON_IMAGE OUT_DIR
"""
import json
import os
import sys

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

import chromium  # tests/browser/chromium.py

base, photo, png, non_image, out = sys.argv[1:6]
os.makedirs(out, exist_ok=True)
driver = chromium.headless()
result = {}
try:
    wait = WebDriverWait(driver, 30)
    driver.get(base + "/")
    result["title"] = driver.title

    # 1. pick a real photo
    driver.find_element(By.ID, "file").send_keys(os.path.abspath(photo))
    wait.until(lambda d: d.find_element(By.ID, "label").text.strip() != "")
    result["photo_label"] = driver.find_element(By.ID, "label").text.strip().lower()
    result["photo_bars"] = [b.get_attribute("data-label") for b in driver.find_elements(By.CSS_SELECTOR, "#bars .bar")]
    wait.until(lambda d: d.execute_script(
        "const i = document.getElementById('preview'); return i.complete && i.naturalWidth > 0;"))
    result["preview_loaded"] = True
    # The explanation: shown over the picture, and the toggle switches back.
    result["why_shown"] = driver.find_element(By.ID, "why").is_displayed()
    result["why_text"] = driver.find_element(By.ID, "whytext").text
    result["preview_is_overlay"] = driver.execute_script(
        "return document.getElementById('preview').src.startsWith('data:image/png;base64,');")
    result["overlay_size"] = driver.execute_script(
        "const i = document.getElementById('preview'); return [i.naturalWidth, i.naturalHeight];")
    driver.save_screenshot(os.path.join(out, "upload-page-photo.png"))
    driver.find_element(By.ID, "showwhy").click()
    result["preview_after_toggle"] = driver.execute_script(
        "return document.getElementById('preview').src.slice(0, 5);")

    # 2. drop a PNG onto the drop zone (a synthetic drop event with a real File)
    driver.execute_script("document.getElementById('label').textContent = '';")
    with open(png, "rb") as f:
        data = list(f.read())
    driver.execute_script("""
        const bytes = new Uint8Array(arguments[0]);
        const file = new File([bytes], 'dropped.png', {type: 'image/png'});
        const dt = new DataTransfer(); dt.items.add(file);
        const zone = document.getElementById('drop');
        zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: dt, bubbles: true, cancelable: true}));
        zone.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
    """, data)
    wait.until(lambda d: d.find_element(By.ID, "label").text.strip() != "")
    result["drop_label"] = driver.find_element(By.ID, "label").text.strip().lower()
    driver.save_screenshot(os.path.join(out, "upload-page-drop.png"))

    # 3. a file that is not a picture: the page shows the server's message
    driver.find_element(By.ID, "file").send_keys(os.path.abspath(non_image))
    wait.until(EC.text_to_be_present_in_element((By.ID, "status"), "Sorry"))
    status = driver.find_element(By.ID, "status")
    result["error_text"] = status.text
    result["error_class"] = status.get_attribute("class")
    result["result_hidden"] = not driver.find_element(By.ID, "result").is_displayed()
    driver.save_screenshot(os.path.join(out, "upload-page-error.png"))
    # nothing was fetched from elsewhere
    result["foreign_requests"] = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith(location.origin));")
finally:
    driver.quit()
print(json.dumps(result))
