"""The headless Chromium every page script drives (Debian's chromium and
chromedriver, or CHROMIUM / CHROMEDRIVER): no network of its own, a fresh
profile each time."""
import os
import tempfile

from selenium import webdriver
from selenium.webdriver.chrome.service import Service


def headless(window="900,900"):
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--window-size={window}", f"--user-data-dir={tempfile.mkdtemp()}"):
        opts.add_argument(flag)
    service = Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(service=service, options=opts)
