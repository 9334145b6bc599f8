/** Chaos, short profile, on PostgreSQL: every node with a server of its own (see test/helpers/chaos.ts and scripts/chaos/). */
import { test } from "uvu";
import { chaosTests } from "../helpers/chaos.js";
import { SHORT_PROFILE_POSTGRES } from "../../scripts/chaos/scenarios.js";

chaosTests(test, SHORT_PROFILE_POSTGRES, { repo: "postgres" });
test.run();
