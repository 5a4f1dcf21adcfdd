#!/bin/sh
# Copies the built files of Bootstrap and Chart.js from npm into ui/vendor/,
# where the master embeds them (the admin must work offline: no CDN). Run
# after changing a version in package.json: `cd ui && npm install && npm run vendor`.
set -eu
cd "$(dirname "$0")"
cp node_modules/bootstrap/dist/css/bootstrap.min.css vendor/
cp node_modules/bootstrap/dist/js/bootstrap.bundle.min.js vendor/
cp node_modules/bootstrap/LICENSE vendor/BOOTSTRAP-LICENSE
# Chart.js's UMD build defines the global `Chart` (the admin has no bundler).
cp node_modules/chart.js/dist/chart.umd.min.js vendor/chart.umd.min.js
cp node_modules/chart.js/LICENSE.md vendor/CHARTJS-LICENSE.md
# No source-map references: the admin loads nothing it does not serve.
sed -i "/sourceMappingURL/d" vendor/bootstrap.min.css vendor/bootstrap.bundle.min.js
sed -i "s|//# sourceMappingURL=[^ ]*||" vendor/chart.umd.min.js
echo "vendored bootstrap $(node -p "require('bootstrap/package.json').version"), chart.js $(node -p "JSON.parse(require('fs').readFileSync('node_modules/chart.js/package.json')).version")"
