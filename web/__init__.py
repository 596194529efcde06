"""The browser demo: ``serve.py`` serves the page; ``browser.py`` drives it in headless Chromium."""
