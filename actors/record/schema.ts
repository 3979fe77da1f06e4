/**
 * Per-topic JSON Schema of the envelope's `payload` (`SLUICE_SCHEMA_DIR`).
 *
 * The directory holds one `<topic>.schema.json` per topic to check; a topic
 * without a file is not checked. Every file is read and compiled once, at
 * start ({@link loadPayloadSchemas}): a file that is not JSON, not a valid
 * schema of its draft (JSON Schema draft-07 by default; 2019-09 or 2020-12
 * when its `$schema` says so), or that uses an unknown keyword or format is
 * a configuration error (sluice exits with code 2 naming the file and the
 * problem). `$ref` resolves inside the file only (nothing is fetched).
 *
 * Validation uses Ajv (npm `ajv`, pinned in deno.json), which compiles each
 * schema to a JavaScript function once, plus `ajv-formats` for the `format`
 * keyword (`date-time`, `email`, `uuid`, ...). Ajv stops at the first error
 * (`allErrors: false`): the cheapest path, and one precise message.
 *
 * A payload that fails gives a message naming the failing path (a JSON
 * pointer from the envelope root, e.g. `/payload/items/0/price`), the rule
 * (the JSON Schema keyword) and where the rule is in the schema, e.g.
 *
 * ```text
 * Payload does not match orders.schema.json: /payload/amount must be >= 0 (rule minimum at #/properties/amount/minimum)
 * ```
 *
 * which {@link parseEnvelope} (`actors/record/envelope.ts`) turns into a
 * `VALIDATION_ERROR` dead letter.
 *
 * @module
 */
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import { Ajv2019 } from "ajv/dist/2019.js";
import { Ajv2020 } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

/** File name suffix of a topic's schema. */
export const SCHEMA_SUFFIX = ".schema.json";

/** The loaded schemas. */
export interface PayloadSchemas {
  /** Topics that have a schema, sorted. */
  readonly topics: readonly string[];
  /** The schema file of each topic. */
  readonly files: ReadonlyMap<string, string>;
  /**
   * Checks `payload` of a record of `topic`: null when it passes (or when
   * the topic has no schema), else the message (see the module doc).
   */
  validate(topic: string, payload: unknown): string | null;
}

/** Problems found in the schema directory, each naming the file. */
export class SchemaDirError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid payload schemas:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "SchemaDirError";
  }
}

type AjvLike = Pick<Ajv, "compile" | "validateSchema" | "errorsText" | "errors">;

function makeAjv(draft: "07" | "2019" | "2020"): AjvLike {
  // Unknown keywords and formats are errors (a typo would silently check
  // nothing); the type-annotation strictness of Ajv is not (valid schemas
  // such as `{"prefixItems": [...]}` without `"type": "array"` must load).
  const opts = {
    allErrors: false,
    strictSchema: true,
    strictNumbers: true,
    strictTypes: false,
    strictTuples: false,
    strictRequired: false,
    allowUnionTypes: true,
    validateFormats: true,
  } as const;
  const ajv = draft === "2020"
    ? new Ajv2020(opts)
    : draft === "2019"
    ? new Ajv2019(opts)
    : new Ajv(opts);
  // deno-lint-ignore no-explicit-any
  (addFormats as any)(ajv);
  return ajv;
}

function draftOf(schema: unknown): "07" | "2019" | "2020" | null {
  const id = typeof schema === "object" && schema !== null
    ? (schema as { $schema?: unknown }).$schema
    : undefined;
  if (id === undefined) return "07";
  if (typeof id !== "string") return null;
  if (/json-schema\.org\/draft\/2020-12\/schema/.test(id)) return "2020";
  if (/json-schema\.org\/draft\/2019-09\/schema/.test(id)) return "2019";
  if (/json-schema\.org\/draft-0[67]\/schema/.test(id)) return "07";
  return null;
}

const MAX_MESSAGE = 500;

/** The dead-letter message of the first Ajv error. */
export function describeSchemaError(file: string, e: ErrorObject): string {
  let path = `/payload${e.instancePath}`;
  const params = e.params as Record<string, unknown>;
  // An unexpected member is named in the path (its own rule, the object's, says nothing of it).
  if (typeof params.additionalProperty === "string") {
    path += `/${params.additionalProperty.replace(/~/g, "~0").replace(/\//g, "~1")}`;
  }
  const msg = `Payload does not match ${file}: ${path} ${
    e.message ?? "is invalid"
  } (rule ${e.keyword} at ${e.schemaPath})`;
  return msg.length > MAX_MESSAGE ? `${msg.slice(0, MAX_MESSAGE - 1)}…` : msg;
}

/**
 * Reads and compiles every `<topic>.schema.json` of `dir`.
 *
 * @throws {SchemaDirError} listing every problem (unreadable directory, no
 *   schema file, a file that is not JSON, an invalid schema).
 */
export function loadPayloadSchemas(dir: string): PayloadSchemas {
  const problems: string[] = [];
  const validators = new Map<string, ValidateFunction>();
  const files = new Map<string, string>();
  let names: string[] = [];
  try {
    names = [...Deno.readDirSync(dir)]
      .filter((e) => (e.isFile || e.isSymlink) && e.name.endsWith(SCHEMA_SUFFIX))
      .map((e) => e.name)
      .sort();
  } catch (e) {
    throw new SchemaDirError([
      `SLUICE_SCHEMA_DIR=${JSON.stringify(dir)}: cannot read the directory (${
        e instanceof Error ? e.message : String(e)
      })`,
    ]);
  }
  if (names.length === 0) {
    problems.push(`SLUICE_SCHEMA_DIR=${JSON.stringify(dir)}: no <topic>${SCHEMA_SUFFIX} file`);
  }
  for (const name of names) {
    const topic = name.slice(0, -SCHEMA_SUFFIX.length);
    const where = `${dir.replace(/\/$/, "")}/${name}`;
    let schema: unknown;
    try {
      schema = JSON.parse(Deno.readTextFileSync(`${dir}/${name}`));
    } catch (e) {
      problems.push(`${where}: not JSON (${e instanceof Error ? e.message : String(e)})`);
      continue;
    }
    if (
      typeof schema !== "boolean" &&
      (typeof schema !== "object" || schema === null || Array.isArray(schema))
    ) {
      problems.push(`${where}: a schema must be a JSON object or a boolean`);
      continue;
    }
    const draft = draftOf(schema);
    if (draft === null) {
      problems.push(
        `${where}: unsupported $schema ${
          JSON.stringify((schema as { $schema?: unknown }).$schema)
        } (draft-07, 2019-09 or 2020-12)`,
      );
      continue;
    }
    const ajv = makeAjv(draft);
    try {
      if (!ajv.validateSchema(schema as object)) {
        problems.push(`${where}: not a valid JSON Schema: ${ajv.errorsText(ajv.errors)}`);
        continue;
      }
      validators.set(topic, ajv.compile(schema as object));
      files.set(topic, name);
    } catch (e) {
      problems.push(`${where}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  if (problems.length > 0) throw new SchemaDirError(problems);
  return {
    topics: [...validators.keys()].sort(),
    files,
    validate(topic, payload) {
      const v = validators.get(topic);
      if (v === undefined || v(payload)) return null;
      const first = v.errors?.[0];
      return first
        ? describeSchemaError(files.get(topic)!, first)
        : `Payload does not match ${files.get(topic)}`;
    },
  };
}
