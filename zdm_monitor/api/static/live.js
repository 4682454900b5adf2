/*
 * ZDM Monitor live page: the reference client for dashboards that poll
 * GET /api/backups/monitoring/job/<id or name>, with "Authorization: Bearer <token>".
 *
 * The polling protocol, as this file follows it:
 *
 * 1. First request: ?limit=N&detail=true. Page 1 holds the newest N log lines, oldest first.
 *    Show everything; keep the ETag header and X-Log-Cursor (the number of the newest line
 *    you were sent; 0 for an empty log).
 * 2. Wait X-Poll-Interval seconds, then ask only for what is new:
 *    ?after=<cursor>&limit=N&detail=true with "If-None-Match: <ETag>".
 *      304, no body: nothing changed. Wait X-Poll-Interval again.
 *      200: update the progress, append data.job.logEntries (the lines after the cursor,
 *           oldest first), keep the new X-Log-Cursor and ETag. "X-Log-Gap: true" means lines
 *           after your cursor were pruned before you saw them: show that some are missing.
 *           An answer with N lines may not hold them all: ask again at once.
 * 3. No X-Poll-Interval header: the job is complete, canceled or failed. Show the final state
 *    and stop polling.
 * 4. Errors are JSON {"error": text, "code": ...}. A 4xx (bad or expired token, unknown job,
 *    bad parameter) does not fix itself: show it and stop. A 5xx (503: the database is
 *    unreachable) or a network failure: show it and try again after Retry-After, or after a
 *    delay that doubles up to a minute.
 *
 * A wall (/?server=<id or name>) polls GET /api/backups/monitoring/system/<id or name> the
 * same way, without a cursor: ?limit=100&logLimit=0&detail=true with "If-None-Match: <ETag>",
 * at its X-Poll-Interval (the shortest of its jobs'); a card opens /?job=<id>. "Older lines"
 * asks the job's next page back (?page=N) once, on request, and adds what came before.
 *
 * Times in the data are the service's wall clock (ZDM_TIMEZONE), which no field names. Every
 * answer says the same second twice, in its Date header (UTC) and its body's timestamp (the
 * service's zone), so their difference, rounded to a quarter hour, names the zone.
 *
 * Switching job, server or token aborts the request in flight and cancels the timer, so two
 * things are never polled at once. API text is only ever set as textContent, never as HTML,
 * and with its invisible characters made visible (see visible() below).
 */
"use strict";

(() => {
  const API = "/api/backups/monitoring/job/";
  const SERVER_API = "/api/backups/monitoring/system/";
  const LIMIT = 100; // lines per request
  const WALL_JOBS = 100; // cards on a wall
  const MAX_LINES = 500; // lines kept on the page; older ones are dropped from the top
  const MAX_BACKOFF = 60; // seconds
  const FINAL = { complete: "complete", canceled: "canceled", error: "failed" };

  const $ = (id) => document.getElementById(id);
  // ZDM's names, messages and log lines are shown as they are, invisible characters included:
  // a right-to-left override would make "rtl\u202Egnp.exe" read "rtlexe.png", so bidirectional
  // controls, other format characters and control codes (but tab and newline) show as
  // <U+202E>, and live.css isolates each value from the text around it.
  const HIDDEN =
    /[\u0000-\u0008\u000B-\u001F\u007F-\u009F\u00AD\u061C\u180E\u200B-\u200F\u2028-\u202E\u2060-\u206F\uFEFF\uFFF9-\uFFFB\u{E0000}-\u{E007F}]/gu;
  const visible = (value) =>
    String(value).replace(
      HIDDEN,
      (c) => `<U+${c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}>`,
    );
  const text = (id, value) => {
    $(id).textContent = visible(value ?? "-");
  };
  const pad = (number) => String(number).padStart(2, "0");
  const TOKEN_HELP =
    "Enter a bearer token: in a checkout, `.venv/bin/zdm-dev token` prints one (so does the" +
    " banner of `make run`); in production, ZDM's API issues them.";
  const WHAT_HELP =
    "Enter a job ID or name (e.g. bulk-data), or a server ID or name (e.g. linux-server-01)" +
    " for a wall of its jobs.";

  // The service's zone as minutes east of UTC, once an answer has told it.
  let offset = null;

  function learnZone(response, body) {
    const utc = Date.parse(response.headers.get("Date") ?? "");
    const wall = /^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)$/.exec(body.timestamp ?? "");
    if (Number.isNaN(utc) || !wall) return;
    const [year, month, day, hour, minute, second] = wall.slice(1).map(Number);
    const local = Date.UTC(year, month - 1, day, hour, minute, second);
    offset = Math.round((local - utc) / 900000) * 15;
    for (const id of ["job-zone", "wall-zone"]) {
      text(id, `Times in ${zoneName(offset)}, the service's zone.`);
    }
  }

  function zoneName(minutes) {
    if (minutes === 0) return "UTC";
    const east = Math.abs(minutes);
    return `UTC${minutes < 0 ? "-" : "+"}${pad(Math.floor(east / 60))}:${pad(east % 60)}`;
  }

  // An instant (ms) on the service's 24-hour clock, its zone named.
  function clock(instant) {
    const minutes = offset ?? 0;
    const at = new Date(instant + minutes * 60000);
    const time = [at.getUTCHours(), at.getUTCMinutes(), at.getUTCSeconds()].map(pad).join(":");
    return `${time} ${zoneName(minutes)}`;
  }

  // What is being watched: {poll, identifier, token, controller, timer, etag, cursor, failures,
  // older (pages of the log shown, counted from the newest), pages (the log's)}.
  let session = null;

  function start(identifier, token) {
    begin(poll, identifier, token);
    $("log").replaceChildren();
    $("older").hidden = true;
    link({ job: identifier });
  }

  function startWall(identifier, token) {
    begin(pollWall, identifier, token);
    link({ server: identifier });
  }

  function begin(pollFunction, identifier, token) {
    stop();
    session = {
      poll: pollFunction,
      identifier,
      token,
      controller: new AbortController(),
      timer: 0,
      etag: null,
      cursor: null,
      failures: 0,
      older: 1,
      pages: 1,
    };
    $("job-view").hidden = true;
    $("wall-view").hidden = true;
    showError(null);
    $("stop").disabled = false;
    setState("loading", `Loading ${identifier}…`);
    pollFunction(session);
  }

  // The address names what is shown, so a reload or a shared link shows it again.
  function link(params) {
    history.replaceState(null, "", `/?${new URLSearchParams(params)}`);
  }

  // One request of a session; undefined when it failed (and was handled) or was superseded.
  async function ask(s, url, validate) {
    const headers = { Authorization: `Bearer ${s.token}` };
    if (validate && s.etag) headers["If-None-Match"] = s.etag;
    let response;
    let body = null;
    try {
      response = await fetch(url, { headers, cache: "no-store", signal: s.controller.signal });
      if (response.status !== 304) body = await response.json().catch(() => null);
    } catch (err) {
      if (s === session) retry(s, `The service did not answer (${err.message}).`, null);
      return undefined;
    }
    if (s !== session) return undefined; // something else was chosen meanwhile
    if (response.status === 304) {
      s.failures = 0;
      showError(null);
      next(s, response, false, "304 not modified");
      return undefined;
    }
    if (!response.ok || !body || body.success !== true) {
      failed(s, response, body);
      return undefined;
    }
    s.failures = 0;
    showError(null);
    learnZone(response, body);
    return { response, body };
  }

  async function pollWall(s) {
    const query = new URLSearchParams({
      limit: String(WALL_JOBS),
      logLimit: "0",
      detail: "true",
    });
    const answer = await ask(s, `${SERVER_API}${encodeURIComponent(s.identifier)}?${query}`, true);
    if (!answer) return;
    renderWall(answer.body.data);
    s.etag = answer.response.headers.get("ETag");
    next(s, answer.response, false, "200 updated");
  }

  function stop() {
    if (session) {
      session.controller.abort();
      clearTimeout(session.timer);
      session = null;
    }
    $("stop").disabled = true;
  }

  async function poll(s) {
    const first = s.cursor === null;
    const query = new URLSearchParams({ limit: String(LIMIT), detail: "true" });
    if (!first) query.set("after", s.cursor);
    const answer = await ask(s, `${API}${encodeURIComponent(s.identifier)}?${query}`, true);
    if (!answer) return;
    const { response, body } = answer;
    const job = body.data.job;
    const entries = job.logEntries ?? job.log.map((message) => ({ message }));
    render(body.data);
    showLines(entries, first, response.headers.get("X-Log-Gap") === "true");
    const cursor = response.headers.get("X-Log-Cursor");
    s.cursor = cursor ?? String(entries.at(-1)?.line ?? s.cursor ?? 0);
    s.etag = response.headers.get("ETag");
    if (first) {
      s.pages = JSON.parse(response.headers.get("X-Pagination") ?? "{}").total_pages ?? 1;
      $("older").hidden = s.pages <= s.older;
    }
    // A full answer to `after` may have left lines behind; page 1 is the newest already.
    next(s, response, !first && entries.length >= LIMIT, "200 updated");
  }

  // The page of the log before those shown, on request. Pages count from the newest line, so
  // new lines since move them: only lines older than the oldest shown are added.
  async function older(s) {
    $("older").disabled = true;
    const query = new URLSearchParams({
      page: String(s.older + 1),
      limit: String(LIMIT),
      detail: "true",
    });
    try {
      const response = await fetch(`${API}${encodeURIComponent(s.identifier)}?${query}`, {
        headers: { Authorization: `Bearer ${s.token}` },
        cache: "no-store",
        signal: s.controller.signal,
      });
      const body = await response.json().catch(() => null);
      if (s !== session) return;
      if (!response.ok || !body || body.success !== true) {
        showError(`${body?.error ?? response.statusText} (${body?.code ?? response.status})`);
        return;
      }
      const shown = Number($("log").querySelector(".line-no")?.textContent ?? Infinity);
      const before = body.data.job.logEntries.filter((entry) => entry.line < shown);
      $("log").prepend(...before.map(lineItem));
      s.older += 1;
      $("older").hidden = s.older >= s.pages;
      countLines();
    } catch (err) {
      if (s === session) showError(`The service did not answer (${err.message}).`);
    } finally {
      $("older").disabled = false;
    }
  }

  function next(s, response, more, what) {
    const interval = response.headers.get("X-Poll-Interval");
    // The answer's own time (its Date header), as the data's times are written.
    const at = clock(Date.parse(response.headers.get("Date") ?? "") || Date.now());
    if (more) {
      schedule(s, 0);
    } else if (interval === null) {
      const status = $("status").textContent;
      const wall = s.poll === pollWall;
      stop();
      setState(
        "stopped",
        wall
          ? "Every job shown is complete, canceled or failed: polling stopped."
          : `Job ${FINAL[status] ?? status}: final state, polling stopped.`,
      );
    } else {
      const seconds = Number(interval) > 0 ? Number(interval) : 5;
      schedule(s, seconds);
      setState("polling", `Polling every ${seconds} s · last answer ${what} at ${at}`);
    }
  }

  function failed(s, response, body) {
    const reason = typeof body?.error === "string" ? body.error : response.statusText;
    const code = typeof body?.code === "string" ? body.code : `HTTP-${response.status}`;
    const message = `${reason} (${code}, HTTP ${response.status})`;
    if (response.status >= 500 || response.status === 429) {
      const after = Number(response.headers.get("Retry-After"));
      retry(s, message, Number.isInteger(after) && after > 0 ? after : null);
      return;
    }
    stop();
    showError(message);
    setState("stopped", "Polling stopped: fix the job, the server or the token, then Load again.");
  }

  function retry(s, message, retryAfter) {
    s.failures += 1;
    const seconds = retryAfter ?? Math.min(MAX_BACKOFF, 2 ** s.failures);
    showError(`${message} Trying again in ${seconds} s.`);
    setState("retrying", `Retrying in ${seconds} s (attempt ${s.failures + 1})`);
    schedule(s, seconds);
  }

  function schedule(s, seconds) {
    clearTimeout(s.timer);
    s.timer = setTimeout(() => s.poll(s), seconds * 1000);
  }

  function render(data) {
    const { info, progressInfo: progress, repository } = data.job;
    $("job-view").hidden = false;
    text("job-name", info.name);
    text("job-id", info.id === undefined ? "" : `#${info.id}`);
    text("server", data.system.os ? `${data.system.name} (${data.system.os})` : data.system.name);
    const drive = "drive" in info;
    text("place-label", drive ? "Drive" : "Partition");
    text("place", drive ? info.drive : info.partition);
    text("mode", info.mode);
    text("repository", repository ? `${repository.type} ${repository.path}` : "-");
    const percent = Math.max(0, Math.min(100, parseInt(progress.percent, 10) || 0));
    $("progress").setAttribute("aria-valuenow", String(percent));
    $("progress-bar").style.width = `${percent}%`;
    text("percent", progress.percent);
    text("status", progress.status);
    $("status").className = `status status-${progress.status}`;
    $("progress").className = `progress progress-${progress.status}`;
    text("message", progress.message);
    text("start", progress.start);
    text("elapsed", progress.elapsed);
    text("end", progress.end);
    text("last-report", progress.lastReport);
    $("stalled").hidden = progress.stalled !== true;
    text("stalled", `stalled: no report since ${progress.lastReport}`);
  }

  function showLines(entries, replace, gap) {
    const box = $("log-box");
    const list = $("log");
    const atBottom = replace || box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    if (replace) list.replaceChildren();
    if (gap) {
      const marker = document.createElement("li");
      marker.className = "gap";
      marker.textContent = "… some lines were pruned on the server before they could be shown …";
      list.append(marker);
    }
    for (const entry of entries) list.append(lineItem(entry));
    while (list.children.length > MAX_LINES) list.firstElementChild.remove();
    if (atBottom) box.scrollTop = box.scrollHeight;
    countLines();
  }

  function countLines() {
    const shown = $("log").querySelectorAll("li:not(.gap)").length;
    text("log-count", shown ? `(last ${shown} lines, newest at the bottom)` : "(empty)");
  }

  function renderWall(data) {
    const { system, summary } = data;
    $("wall-view").hidden = false;
    text("wall-name", system.name);
    text("wall-os", system.os ? `(${system.os})` : "");
    const incomplete = summary.incomplete ? ` · ${summary.incomplete} incomplete, not shown` : "";
    text(
      "summary",
      `${summary.total} jobs: ${summary.completed} complete, ${summary.inProgress} in progress, ` +
        `${summary.failed} failed, ${summary.pending} pending · overall ` +
        `${summary.overallProgress}${incomplete}`,
    );
    $("cards").replaceChildren(...data.job.map(card));
  }

  function element(tag, className, content) {
    const node = document.createElement(tag);
    node.className = className;
    if (content !== undefined) node.textContent = visible(content);
    return node;
  }

  // One job of the wall: a link to its own view.
  function card(job) {
    const { info, progressInfo: progress } = job;
    const node = element("a", "card");
    node.href = `/?${new URLSearchParams({ job: String(info.id ?? info.name) })}`;
    node.dataset.job = info.name;
    const title = element("div", "card-title");
    title.append(
      element("span", "card-name", info.name),
      element("span", `status status-${progress.status}`, progress.status),
    );
    const place = "drive" in info ? `Drive ${info.drive}` : `Partition ${info.partition}`;
    const percent = Math.max(0, Math.min(100, parseInt(progress.percent, 10) || 0));
    const bar = element("div", `progress progress-${progress.status}`);
    bar.setAttribute("role", "progressbar");
    bar.setAttribute("aria-valuenow", String(percent));
    const fill = element("div", "progress-bar");
    fill.style.width = `${percent}%`;
    bar.append(fill, element("span", "progress-text", progress.percent));
    node.append(
      title,
      element("span", "card-place muted", place),
      bar,
      element("span", "card-message", progress.message),
      element("span", "card-elapsed muted", `elapsed ${progress.elapsed}`),
    );
    if (progress.stalled === true) {
      node.append(element("span", "stalled", `stalled: no report since ${progress.lastReport}`));
    }
    return node;
  }

  function lineItem(entry) {
    const item = document.createElement("li");
    for (const [name, value] of [
      ["line-no", entry.line],
      ["time", entry.time],
      ["msg", entry.message],
    ]) {
      if (value === undefined) continue;
      const span = document.createElement("span");
      span.className = name;
      span.textContent = visible(value);
      item.append(span);
    }
    return item;
  }

  function showError(message) {
    $("error").hidden = message === null;
    $("error").textContent = visible(message ?? "");
  }

  function setState(state, message) {
    $("poll-state").dataset.state = state;
    $("poll-state").textContent = message;
  }

  const devToken = document.querySelector('meta[name="zdm-dev-token"]')?.content ?? "";
  if (devToken) {
    // Only a service started by `make run` offers one; production pages never do.
    $("use-dev-token").hidden = false;
    $("use-dev-token").addEventListener("click", () => {
      $("token").value = devToken;
    });
    if (!$("token").value) $("token").value = devToken;
  }

  const token = () => $("token").value.trim().replace(/^bearer\s+/i, "");

  $("job-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const job = $("job").value.trim();
    const server = $("server-name").value.trim();
    const missing = [!job && !server && WHAT_HELP, !token() && TOKEN_HELP].filter(Boolean);
    if (missing.length) {
      // Nothing to ask for: say what is missing, and send nothing.
      stop();
      showError(missing.join(" "));
      setState("idle", "Enter a job or a server and a token, then Load.");
      $(!job && !server ? "job" : "token").focus();
      return;
    }
    if (job) start(job, token());
    else startWall(server, token());
  });

  $("older").addEventListener("click", () => {
    if (session?.poll === poll) older(session);
  });

  // A deep link (/?job=... or /?server=...) shows its job or wall at once when a token is there.
  const asked = new URLSearchParams(location.search);
  if (asked.get("job")) {
    $("job").value = asked.get("job");
    if (token()) start(asked.get("job"), token());
  } else if (asked.get("server")) {
    $("server-name").value = asked.get("server");
    if (token()) startWall(asked.get("server"), token());
  }

  // Korean names and messages need a font with Hangul. Draw a Hangul syllable and a character
  // no font has: when both come out alike (the same empty box), no installed font can draw
  // Hangul, and the page says so rather than leave boxes unexplained.
  function hangulDrawable() {
    const canvas = document.createElement("canvas");
    canvas.width = 48;
    canvas.height = 48;
    const context = canvas.getContext("2d", { willReadFrequently: true });
    if (!context) return true;
    context.font = `32px ${getComputedStyle(document.body).fontFamily}`;
    context.textBaseline = "top";
    const drawn = (character) => {
      context.clearRect(0, 0, 48, 48);
      context.fillText(character, 4, 4);
      return context.getImageData(0, 0, 48, 48).data.join();
    };
    return drawn("\uD55C") !== drawn("\u{10FFFD}");
  }
  $("font-notice").hidden = hangulDrawable();

  $("stop").addEventListener("click", () => {
    stop();
    setState("stopped", "Polling stopped.");
  });
})();
