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
import tempfile

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

base, picture, out = sys.argv[1:4]
os.makedirs(out, exist_ok=True)
opts = webdriver.ChromeOptions()
opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--window-size=900,900", f"--user-data-dir={tempfile.mkdtemp()}"):
    opts.add_argument(flag)
driver = webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")), options=opts)
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
