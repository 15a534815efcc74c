// Debian's Chromium as the dashboard's tests and bench drive it (playwright-core, no downloaded browser).
export const CHROMIUM = '/usr/bin/chromium';
/** Headless, and nothing that would reach the network on its own. */
export const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];
