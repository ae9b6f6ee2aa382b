# Chromium and its WebDriver (chromedriver) from Debian, for the inspector's browser tests
# (tests/ui, Selenium from the lock file). Debian builds both from one source at one
# version, so the driver always matches the browser; nothing is downloaded by Selenium
# (the tests hand it both paths) or by a browser installer. Cold install on a fresh
# Debian 12 machine: see docs/architecture.md ("Inspector"). A no-op once installed.
CHROMIUM_BIN ?= /usr/bin/chromium
CHROMEDRIVER_BIN ?= /usr/bin/chromedriver
export CHROMIUM_BIN CHROMEDRIVER_BIN

.PHONY: chromium
chromium: $(CHROMIUM_BIN) $(CHROMEDRIVER_BIN)

$(CHROMIUM_BIN) $(CHROMEDRIVER_BIN) &:
	apt-get install -y -q --no-install-recommends chromium chromium-driver \
		|| (apt-get update -q && apt-get install -y -q --no-install-recommends chromium chromium-driver)

tools:: chromium
