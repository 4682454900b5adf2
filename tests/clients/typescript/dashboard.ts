/*
 * A dashboard's tile for a job, typed by openapi-typescript from the service's own
 * /api/openapi.json (schema.d.ts). It tells an answer from an error by `success` alone, and the
 * switch on the error's `code` is exhaustive: a code the document gains that this file does not
 * handle fails tsc --strict at the `never` in its default branch.
 */
import type { components } from "./schema.js";

type Schemas = components["schemas"];
export type JobAnswer = Schemas["MonitoringResponse"] | Schemas["ErrorResponse"];

/** What the job's tile shows: its progress, or what to do about the error. */
export function tile(answer: JobAnswer): string {
  if (!answer.success) return advice(answer);
  const job = answer.data.job;
  return `${job.info.name}: ${job.progressInfo.status}`;
}

/** What the dashboard's user is told, by the error's code. */
export function advice(error: Schemas["ErrorResponse"]): string {
  const details = Object.keys(error.details ?? {}).sort();
  const code = error.code;
  switch (code) {
    case "JOB-ERROR-01":
      return details.length ? `does not match: ${details.join(", ")}` : "no such job";
    case "JOB-ERROR-20":
      return "incomplete job data";
    case "REQUEST-ERROR-01":
      return `bad parameters: ${details.join(", ")}`;
    case "AUTH-ERROR-01":
      return "sign in again";
    case "SERVICE-UNAVAILABLE":
    case "HTTP-408":
    case "HTTP-429":
      return "try again shortly";
    case "INTERNAL-ERROR":
      return "the service failed";
    case "HTTP-400":
    case "HTTP-403":
    case "HTTP-404":
    case "HTTP-405":
    case "HTTP-411":
    case "HTTP-413":
    case "HTTP-414":
    case "HTTP-416":
    case "HTTP-417":
    case "HTTP-421":
    case "HTTP-431":
    case "HTTP-501":
    case "HTTP-505":
      return `the dashboard's request is wrong (${code})`;
    default: {
      const unhandled: never = code;
      throw new Error(`a code this dashboard does not know: ${String(unhandled)}`);
    }
  }
}
