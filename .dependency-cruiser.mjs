// What each folder of src/ may import (npm run lint; README "Development" says the same in prose).
// dependency-cruiser follows every import to the file it resolves to, `import type` and
// `import("…")` types included, so how an import is spelled cannot get it past a rule; and it
// counts type-only imports in cycles, which eslint-plugin-import(-x)'s no-cycle skips.
const LAYERS_ABOVE_STORAGE = "^src/(nats|actors|client|cli|dashboard|local)/";

export default {
  forbidden: [
    {
      name: "no-cycle",
      comment: "modules in src/ import one another in one direction: move what both sides need into a module both import",
      severity: "error",
      from: { path: "^src/" },
      to: { circular: true },
    },
    {
      name: "machines-import-xstate-only",
      comment: "src/machines is pure state: xstate and its sibling machines, no I/O, nothing else of ferry's",
      severity: "error",
      from: { path: "^src/machines/" },
      to: { pathNot: ["^src/machines/", "(^|/)node_modules/xstate/"] },
    },
    {
      name: "storage-below-nats",
      comment: "src/storage knows nothing of NATS nor of the layers that use it",
      severity: "error",
      from: { path: "^src/storage/" },
      to: { path: ["(^|/)node_modules/@nats-io/", LAYERS_ABOVE_STORAGE, "^src/machines/"] },
    },
    {
      name: "nats-is-the-protocol",
      comment: "src/nats (the wire protocol) imports errors, config and its own files: the layers above use it, not it them",
      severity: "error",
      from: { path: "^src/nats/" },
      to: { path: ["^src/(storage|machines|actors|client|cli|dashboard|local)/"] },
    },
    {
      name: "only-cli-imports-cli",
      comment: "src/cli is the top: code the dashboard or anything else shares with it lives in src/client or below",
      severity: "error",
      from: { path: "^src/", pathNot: "^src/cli/" },
      to: { path: "^src/cli/" },
    },
    {
      name: "only-cli-imports-dashboard",
      comment: "the dashboard is a command's server: only src/cli starts it",
      severity: "error",
      from: { path: "^src/", pathNot: "^src/(cli|dashboard)/" },
      to: { path: "^src/dashboard/" },
    },
    {
      name: "imports-resolve",
      comment: "an import the rules cannot resolve is one they cannot check",
      severity: "error",
      from: { path: "^src/" },
      to: { couldNotResolve: true },
    },
  ],
  options: {
    // Type-only imports and import("…") types are dependencies too (the TypeScript compiler's view).
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    doNotFollow: { path: "(^|/)node_modules/" },
    enhancedResolveOptions: { exportsFields: ["exports"], conditionNames: ["import", "require", "node", "default"], mainFields: ["module", "main", "types"] },
  },
};
