#!/bin/sh
# Copies Bootstrap's built files from npm into ui/vendor/, where the master
# embeds them (the admin must work offline: no CDN). Run after changing the
# Bootstrap version in package.json: `cd ui && npm install && npm run vendor`.
set -eu
cd "$(dirname "$0")"
cp node_modules/bootstrap/dist/css/bootstrap.min.css vendor/
cp node_modules/bootstrap/dist/js/bootstrap.bundle.min.js vendor/
cp node_modules/bootstrap/LICENSE vendor/BOOTSTRAP-LICENSE
# No source-map references: the admin loads nothing it does not serve.
sed -i "/sourceMappingURL/d" vendor/bootstrap.min.css vendor/bootstrap.bundle.min.js
echo "vendored bootstrap $(node -p "require('bootstrap/package.json').version")"
