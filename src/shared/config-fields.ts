import { z } from "zod";
import { ROOM_PATTERN } from "./names.js";

/** The kinds of values config-schema.ts and config-limits.ts read from the environment. */

export const port = z.coerce.number().int().min(0).max(65535);
export const positiveInt = z.coerce.number().int().positive();
export const nonNegativeInt = z.coerce.number().int().min(0);
/** "a, b,,c" → ["a", "b", "c"]. */
export const splitCsv = (s: string) =>
  s
    .split(",")
    .map((x) => x.trim())
    .filter((x) => x.length > 0);
export const csv = z.string().transform(splitCsv);
export const bool = z
  .enum(["true", "false", "1", "0", "yes", "no"])
  .transform((v) => v === "true" || v === "1" || v === "yes");
export const url = z.string().url();
/** Room names and `prefix*` patterns, as the `rooms` claim has them (names.ts). */
export const roomPatterns = csv.pipe(
  z.array(z.string().regex(ROOM_PATTERN, "room names or `prefix*` patterns")),
);
