#!/usr/bin/env python3
"""The tutorial's own page (tutorial_page/index.html with jQuery 3.3.1) in
headless Chromium, served from PAGE_URL, another origin than the backend:
picks each picture in turn and reads the cat and dog figures it shows.
Prints one JSON object {picture: {"cat": float, "dog": float} | {"status": str}}.

    tutorial_page.py PAGE_URL BACKEND_URL PICTURE...
"""
import json
import os
import sys

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

import chromium  # tests/browser/chromium.py

page, backend, pictures = sys.argv[1], sys.argv[2], sys.argv[3:]
driver = chromium.headless()
out = {}
try:
    driver.get(f"{page}?backend={backend}")
    wait = WebDriverWait(driver, 30)
    for picture in pictures:
        driver.find_element(By.ID, "image-selector").send_keys(os.path.abspath(picture))
        wait.until(lambda d: d.find_element(By.ID, "dog-prediction").text.strip()
                   or d.find_element(By.ID, "status").text.strip())
        status = driver.find_element(By.ID, "status").text.strip()
        if status:
            out[os.path.basename(picture)] = {"status": status}
        else:
            out[os.path.basename(picture)] = {
                "cat": float(driver.find_element(By.ID, "cat-prediction").text),
                "dog": float(driver.find_element(By.ID, "dog-prediction").text)}
        driver.execute_script("document.getElementById('image-selector').value = '';"
                              "document.getElementById('dog-prediction').textContent = '';")
finally:
    driver.quit()
print(json.dumps(out))
