#!/usr/bin/env python3
"""Drives the upload page in headless Chromium: picks a picture, waits for
its answer and overlay, then presses "Wrong? It is a LABEL". Prints one JSON
object with what the page showed.

    feedback.py BASE_URL PICTURE LABEL OUT_DIR
"""
import json
import os
import sys

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

import chromium  # tests/browser/chromium.py

base, picture, label, out = sys.argv[1:5]
os.makedirs(out, exist_ok=True)
driver = chromium.headless()
result = {}
try:
    wait = WebDriverWait(driver, 60)
    driver.get(base + "/")
    driver.find_element(By.ID, "file").send_keys(os.path.abspath(picture))
    wait.until(lambda d: d.find_element(By.ID, "label").text.strip() != ""
               or "Sorry" in d.find_element(By.ID, "status").text)
    result["label"] = driver.find_element(By.ID, "label").text.strip().lower()
    result["status"] = driver.find_element(By.ID, "status").text
    result["preview_is_overlay"] = driver.execute_script(
        "return document.getElementById('preview').src.startsWith('data:image/png;base64,');")
    result["wrong_shown"] = driver.find_element(By.ID, "wrong").is_displayed()
    result["wrong_text"] = driver.find_element(By.ID, "wrong").text
    result["buttons"] = [b.get_attribute("data-label")
                         for b in driver.find_elements(By.CSS_SELECTOR, "#wrongbuttons button")]
    if result["wrong_shown"]:
        driver.find_element(By.CSS_SELECTOR, f'#wrongbuttons button[data-label="{label}"]').click()
        wait.until(lambda d: d.find_element(By.ID, "wrongstatus").text not in ("", "Sending…"))
        result["wrong_status"] = driver.find_element(By.ID, "wrongstatus").text
        driver.save_screenshot(os.path.join(out, "upload-page-feedback.png"))
finally:
    driver.quit()
print(json.dumps(result))
