// Validate one glTF/GLB file with the Khronos glTF validator and print its report as JSON.
// Usage: node tests/gltf_validate.js <path to node_modules/gltf-validator> <file.glb>
// tests/core/test_exporters_glb.py runs it; exit code 2 means the validator could not run.
const fs = require("fs");
const [validatorPath, assetPath] = process.argv.slice(2);
const validator = require(validatorPath);
const asset = new Uint8Array(fs.readFileSync(assetPath));
validator
  .validateBytes(asset, { uri: assetPath, maxIssues: 0 })
  .then((report) => process.stdout.write(JSON.stringify(report)))
  .catch((error) => {
    process.stderr.write(String(error));
    process.exit(2);
  });
