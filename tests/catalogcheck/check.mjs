// Validates a Backstage catalog file with Backstage's own catalog model: every document
// through the catalog's entity policies (envelope, namespace, field formats, the kind's JSON
// schema) and its kind's validator, after resolving `$text` placeholders the way the
// catalog's placeholder processor does (the file must exist next to the catalog file).
// Prints the entities as JSON; exits 1 with the reason on the first invalid one.
import { readFileSync, existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { parseAllDocuments } from "yaml";
import {
  EntityPolicies,
  DefaultNamespaceEntityPolicy,
  NoForeignRootFieldsEntityPolicy,
  FieldFormatEntityPolicy,
  SchemaValidEntityPolicy,
  componentEntityV1alpha1Validator,
  apiEntityV1alpha1Validator,
} from "@backstage/catalog-model";

const file = process.argv[2];
const base = dirname(resolve(file));
const validators = { Component: componentEntityV1alpha1Validator, API: apiEntityV1alpha1Validator };
const policy = EntityPolicies.allOf([
  new DefaultNamespaceEntityPolicy(),
  new NoForeignRootFieldsEntityPolicy(),
  new FieldFormatEntityPolicy(),
  new SchemaValidEntityPolicy(),
]);

function placeholders(value) {
  if (Array.isArray(value)) return value.map(placeholders);
  if (value && typeof value === "object") {
    const keys = Object.keys(value);
    if (keys.length === 1 && keys[0] === "$text") {
      const target = resolve(base, value.$text);
      if (!existsSync(target)) throw new Error(`$text: ${value.$text} does not exist`);
      return readFileSync(target, "utf8");
    }
    return Object.fromEntries(keys.map((k) => [k, placeholders(value[k])]));
  }
  return value;
}

try {
  const out = [];
  for (const doc of parseAllDocuments(readFileSync(file, "utf8"))) {
    if (doc.errors.length) throw new Error(doc.errors.map(String).join("; "));
    const entity = placeholders(doc.toJS());
    const checked = await policy.enforce(entity);
    const validator = validators[entity.kind];
    if (!validator) throw new Error(`unexpected kind ${entity.kind}`);
    if ((await validator.check(checked)) !== true) throw new Error(`${entity.kind} ${entity.metadata?.name}: not a valid ${entity.kind}`);
    out.push(checked);
  }
  console.log(JSON.stringify(out));
} catch (err) {
  console.error(`catalogcheck: ${err.message}`);
  process.exit(1);
}
