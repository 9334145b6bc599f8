/** Chaos, short profile, first half (see test/helpers/chaos.ts and scripts/chaos/). */
import { test } from "uvu";
import { chaosTests } from "../helpers/chaos.js";
import { SHORT_PROFILE } from "../../scripts/chaos/scenarios.js";

chaosTests(test, SHORT_PROFILE.slice(0, 2));
test.run();
