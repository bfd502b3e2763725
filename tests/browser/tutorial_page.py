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
import tempfile

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

page, backend, pictures = sys.argv[1], sys.argv[2], sys.argv[3:]
opts = webdriver.ChromeOptions()
opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tempfile.mkdtemp()}"):
    opts.add_argument(flag)
driver = webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")), options=opts)
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
