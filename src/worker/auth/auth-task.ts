import { workerData } from "node:worker_threads";
import { createTokenVerifier, type VerifyOptions } from "./verify-token.js";

// A Piscina task: one verifier per thread, built from the options the pool
// was created with (JWKS keys are cached per thread by jose).
const verify = createTokenVerifier(workerData as VerifyOptions);

export default function verifyTask(token: string) {
  return verify(token);
}
