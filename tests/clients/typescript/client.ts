/*
 * A dashboard's calls to zdm-monitor through openapi-fetch, typed by openapi-typescript from the
 * service's own /api/openapi.json (schema.d.ts, generated next to this file by
 * tests/system/test_clients.py). It prints what each answer says, and what the dashboard's tile
 * (dashboard.ts) makes of it; the test compares that with what the parameters asked for, the
 * same report as the Python client's.
 */
import createClient from "openapi-fetch";
import { type JobAnswer, tile } from "./dashboard.js";
import type { paths } from "./schema.js";

const JOB = "/api/backups/monitoring/job/{identifier}";
const SERVER = "/api/backups/monitoring/system/{identifier}";

const { BASE_URL, TOKEN } = process.env;
if (!BASE_URL || !TOKEN) throw new Error("BASE_URL and TOKEN name the service and its token");
const sent: string[] = [];
const client = createClient<paths>({
  baseUrl: BASE_URL,
  headers: { Authorization: `Bearer ${TOKEN}` },
  // The URL each call put on the wire.
  fetch: (request: Request) => {
    const url = new URL(request.url);
    sent.push(url.pathname + url.search);
    return fetch(request);
  },
});

// What the document makes of the query: typed parameters, each on its own. Type-checked, never
// run: tsc fails if the old single `query` object, or a limit as text, were accepted.
export function refusedByTheTypes(): void {
  // @ts-expect-error one parameter per field, not an object named query
  void client.GET(JOB, { params: { path: { identifier: "1" }, query: { query: { limit: 2 } } } });
  // @ts-expect-error limit is a number
  void client.GET(JOB, { params: { path: { identifier: "1" }, query: { limit: "2" } } });
  // @ts-expect-error mode is one of full, increment, smart
  void client.GET(JOB, { params: { path: { identifier: "1" }, query: { mode: "weekly" } } });
}

type Report = Record<string, unknown>;
const report: Record<string, Report> = {};

function job(identifier: string, query: paths[typeof JOB]["get"]["parameters"]["query"] = {}) {
  return client.GET(JOB, { params: { path: { identifier }, query } });
}

// The body of an answer or an error, as the dashboard takes it.
function answerOf(result: { data?: JobAnswer; error?: JobAnswer }): JobAnswer {
  const answer = result.data ?? result.error;
  if (answer === undefined) throw new Error("an answer without a body");
  return answer;
}

function lines(response: Response): Report {
  return {
    status: response.status,
    cursor: response.headers.get("X-Log-Cursor"),
    url: sent.at(-1),
  };
}

{
  const result = await job("1");
  const { data, response } = result;
  report.byId = {
    ...lines(response),
    name: data?.data.job.info.name,
    log: data?.data.job.log,
    tile: tile(answerOf(result)),
  };
}
{
  const { data, response } = await job("daily-backup-win");
  const answer = data?.data;
  report.byName = {
    ...lines(response),
    system: answer?.system.name,
    drive: answer?.job.info.drive,
    partition: answer?.job.info.partition ?? null,
  };
}
{
  const { data, response } = await job("bulk-data", { limit: 2 });
  report.limit = { ...lines(response), log: data?.data.job.log };
}
{
  const { data, response } = await job("daily-backup", { limit: 2, partition: "/" });
  const info = data?.data.job.info;
  report.partition = { ...lines(response), partition: info?.partition, log: data?.data.job.log };
}
{
  const result = await job("weekly-smart", { partition: "/" });
  const { error, response } = result;
  report.otherPartition = {
    ...lines(response),
    code: error?.code,
    details: error?.details,
    tile: tile(answerOf(result)),
  };
}
{
  const { data, response } = await job("bulk-data", { after: 100, page: 2, limit: 10 });
  report.afterPage = { ...lines(response), log: data?.data.job.log };
}
{
  const first = await job("1");
  const etag = first.response.headers.get("ETag") ?? "";
  const { data, response } = await client.GET(JOB, {
    params: { path: { identifier: "1" }, header: { "If-None-Match": etag } },
  });
  report.notModified = {
    ...lines(response),
    sameTag: response.headers.get("ETag") === etag,
    body: data ?? null,
  };
}
{
  const result = await job("999");
  const { error, response } = result;
  report.notFound = { ...lines(response), code: error?.code, tile: tile(answerOf(result)) };
}
{
  const { data, response } = await client.GET(SERVER, {
    params: { path: { identifier: "linux-server-01" }, query: { logLimit: 1 } },
  });
  const jobs = data?.data.job ?? [];
  report.server = {
    ...lines(response),
    names: jobs.map((each) => each.info.name),
    logs: jobs.map((each) => each.log),
    total: data?.data.summary.total,
  };
}

console.log(JSON.stringify(report));
