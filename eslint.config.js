// ESLint for src/, scripts/ and test/: npm run lint, which npm test runs first. Which folder may
// import what is dependency-cruiser's part of npm run lint: .dependency-cruiser.mjs.
import js from "@eslint/js";
import { defineConfig, globalIgnores } from "eslint/config";
import globals from "globals";
import tseslint from "typescript-eslint";

export default defineConfig(
  globalIgnores(["dist/", "bench/", "chaos-results/", "data/", ".example-*/"]),
  {
    extends: [js.configs.recommended, tseslint.configs.recommended],
    languageOptions: { globals: globals.node },
    rules: {
      // `catch {}` is how this code says "best effort": killing a process that may be gone already.
      "no-empty": ["error", { allowEmptyCatch: true }],
      // Actors are wired lazily: closures made before createActor read the `let` it is assigned to.
      "prefer-const": ["error", { ignoreReadBeforeAssign: true }],
      // As tsc's noUnusedParameters: `_x` is a parameter an interface requires; `...rest` omits keys.
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", ignoreRestSiblings: true }],
      // Generators cannot be arrow functions; `self` is how one reaches its instance.
      "@typescript-eslint/no-this-alias": ["error", { allowedNames: ["self"] }],
    },
  },
  {
    // The protocol's names have one home: src/nats (subjects.ts, buckets.ts, records.ts, protocol.ts).
    files: ["src/**"],
    ignores: ["src/nats/**"],
    rules: {
      "no-restricted-syntax": [
        "error",
        { selector: "Literal[value=/^ferry[.][^.\\s]+[.]/]", message: "subjects are named in src/nats/subjects.ts" },
        { selector: "TemplateLiteral[quasis.0.value.raw=/^ferry[.]($|[^.\\s]+[.])/]", message: "subjects are named in src/nats/subjects.ts" },
        { selector: "TemplateLiteral[quasis.0.value.raw='ferry_'][quasis.1.value.raw=/^_(leases|members|tasks)$/]", message: "buckets are named in src/nats/buckets.ts" },
        {
          selector: "CallExpression[callee.property.name=/^(subscribe|request|publish)$/] > TemplateLiteral.arguments:first-child",
          message: "a subject built where it is used: name it in src/nats/subjects.ts",
        },
      ],
    },
  },
  {
    files: ["test/**", "scripts/**"],
    rules: {
      // Tests and benchmarks read loosely shaped JSON (heartbeats, CLI output, results) and check it.
      "@typescript-eslint/no-explicit-any": "off",
    },
  },
);
