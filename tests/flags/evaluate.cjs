// Checks a flagd flag file against flagd's JSON schema (vendored in
// tests/flags/schema from open-feature/flagd-schemas, json/flags.json and
// json/targeting.json) and evaluates one boolean flag with the OpenFeature
// flagd evaluator (@openfeature/flagd-core) for targeting keys user-0 ...
// user-(N-1), as flagd and its in-process providers do.
//
//   node tests/flags/evaluate.cjs FILE FLAG N
//
// Prints one JSON line: {"schemaErrors": [...], "parseError": null or the
// evaluator's reason, "counts": {"<variant>": n, ...}}.
const fs = require("fs");
const path = require("path");
const Ajv = require("ajv");
const { FlagdCore } = require("@openfeature/flagd-core");

const [file, flag, n] = process.argv.slice(2);
const text = fs.readFileSync(file, "utf8");
const schema = (name) => JSON.parse(fs.readFileSync(path.join(__dirname, "schema", name), "utf8"));
const ajv = new Ajv({ strict: false, allErrors: true });
ajv.addSchema(schema("targeting.json"));
const validate = ajv.compile(schema("flags.json"));
const schemaErrors = validate(JSON.parse(text)) ? [] : validate.errors.map((e) => `${e.instancePath} ${e.message}`);

const counts = {};
let parseError = null;
try {
  const core = new FlagdCore();
  core.setConfigurations(text);
  for (let i = 0; i < Number(n); i++) {
    const { variant } = core.resolveBooleanEvaluation(flag, false, { targetingKey: `user-${i}` });
    counts[variant] = (counts[variant] || 0) + 1;
  }
} catch (e) {
  parseError = String(e.cause || e);
}
console.log(JSON.stringify({ schemaErrors, parseError, counts }));
