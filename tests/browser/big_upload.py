#!/usr/bin/env python3
"""Drives the upload page in headless Chromium with a picture over the
server's body limit: the page must take the S3 path (POST uploads, PUT to the
presigned URL, GET uploads/{id}) and show the answer. Prints one JSON object
with what the page showed and which requests it made.

    big_upload.py BASE_URL PICTURE OUT_DIR
"""
import json
import os
import sys

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

import chromium  # tests/browser/chromium.py

base, picture, out = sys.argv[1:4]
os.makedirs(out, exist_ok=True)
driver = chromium.headless()
result = {}
try:
    wait = WebDriverWait(driver, 60)
    driver.get(base + "/")
    result["max_body"] = driver.execute_script("return document.body.dataset.maxBody;")
    driver.find_element(By.ID, "file").send_keys(os.path.abspath(picture))
    wait.until(lambda d: d.find_element(By.ID, "label").text.strip() != ""
               or "Sorry" in d.find_element(By.ID, "status").text)
    result["label"] = driver.find_element(By.ID, "label").text.strip().lower()
    result["status"] = driver.find_element(By.ID, "status").text
    result["confidence"] = driver.find_element(By.ID, "confidence").text
    result["requests"] = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => [e.initiatorType, e.name]);")
    driver.save_screenshot(os.path.join(out, "upload-page-big.png"))
finally:
    driver.quit()
print(json.dumps(result))
