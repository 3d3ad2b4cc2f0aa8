// The jobs page: refreshes the table from GET /api/jobs, sends retry and cancel, runs the try-it
// form and shows its task videos. No framework; every value goes into the page as text (pages.js).
"use strict";
(function () {
  const {el, getJson, watchVideo} = window.pages;
  const body = document.body;
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const pollMs = Number(body.dataset.pollMs) || 1500;
  const tbody = document.querySelector("#jobs tbody");
  let tryJob = null;        // the try-it job's API url, while the page follows it
  let tryShown = false;

  function listUrl() {
    const params = new URLSearchParams();
    for (const name of ["kind", "state", "limit"]) {
      if (body.dataset[name]) params.set(name, body.dataset[name]);
    }
    const query = params.toString();
    return body.dataset.api + (query ? "?" + query : "");
  }

  function row(job) {
    const job_cell = el("td", {class: "job"});
    if (job.name) job_cell.append(el("span", {class: "name"}, job.name), el("br"));
    if (job.project) job_cell.append(el("span", {class: "project"}, job.project), el("br"));
    job_cell.append(el("span", {class: "id"}, job.id));
    if (job.superseded_by) job_cell.append(" ", el("span", {class: "muted"}, "(an earlier run)"));
    if (job.tasks_url) job_cell.append(el("br"), el("a", {class: "tasks", href: job.tasks_url}, "tasks"));
    const kind = el("td", {class: "kind"}, job.kind);
    if (job.request) kind.append(el("br"), el("span", {class: "muted"}, job.request));
    const problem = el("td", {class: "error"}, job.last_error || "");
    if (job.warning) problem.append(el("span", {class: "warning"}, job.warning));
    const state = el("td", {class: "state"}, el("span", {class: "badge state-" + job.state}, job.state));
    if (job.cancel_requested && (job.state === "queued" || job.state === "running")) {
      state.append(" ", el("span", {class: "muted"}, "cancelling"));
    }
    const actions = el("td", {class: "actions"});
    if (job.can_cancel) actions.append(el("button", {type: "button", class: "cancel", "data-action": "cancel", "data-url": job.url}, "Cancel"));
    if (job.can_retry) actions.append(el("button", {type: "button", class: "retry", "data-action": "retry", "data-url": job.url}, "Retry"));
    const updated = job.updated_at || "";
    return el("tr", {"data-job-id": job.id, "data-state": job.state},
      job_cell,
      kind,
      state,
      el("td", {class: "stage"}, job.stage || ""),
      el("td", {class: "progress"}, el("progress", {max: 100, value: job.progress}), " ",
         el("span", {class: "pct"}, job.progress.toFixed(1) + "%")),
      el("td", {class: "eta"}, job.eta || ""),
      el("td", {class: "attempts"}, job.attempts + "/" + job.max_attempts),
      problem,
      el("td", {class: "updated"}, el("time", {dateTime: updated}, updated.slice(11, 19))),
      actions);
  }

  async function refresh() {
    try {
      const answer = await getJson(listUrl());
      tbody.replaceChildren(...answer.jobs.map(row));
      document.getElementById("empty").hidden = answer.jobs.length > 0;
      const now = new Date().toISOString();
      const stamp = document.getElementById("refreshed");
      stamp.dateTime = now;
      stamp.textContent = now.slice(11, 19);
      document.getElementById("poll-error").hidden = true;
      if (tryJob) await followTry();
    } catch (error) {
      document.getElementById("poll-error").hidden = false;
    } finally {
      window.setTimeout(refresh, pollMs);
    }
  }

  function say(text, isError) {
    const message = document.getElementById("action-message");
    message.textContent = text;
    message.className = isError ? "error" : "muted";
    message.hidden = false;
  }

  tbody.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    button.disabled = true;
    const action = button.dataset.action;
    try {
      const response = await fetch(button.dataset.url + "/" + action, {
        method: "POST", credentials: "same-origin", headers: {"X-CSRF-Token": csrf, Accept: "application/json"}});
      const answer = await response.json().catch(() => ({}));
      say((action === "retry" ? "Retry: " : "Cancel: ") + (answer.message || response.status), !response.ok);
    } catch (error) {
      say(action + " failed: " + error, true);
      button.disabled = false;
    }
  });

  // -- try it -------------------------------------------------------------------------------
  function tryStatus(text, isError) {
    const status = document.getElementById("try-status");
    status.textContent = text;
    status.className = isError ? "error" : "";
    document.getElementById("try-result").hidden = false;
  }

  function taskFigure(task) {
    const figure = el("figure", {class: "task", "data-task": task.name});
    if (task.video_url) {
      const video = el("video", {src: task.video_url, controls: true, muted: true, autoplay: true, loop: true,
                                 playsInline: true, preload: "auto"});
      const note = el("p", {class: "video-error error", hidden: true});
      figure.append(video, note);
      watchVideo(video, note);
    } else {
      figure.append(el("p", {class: "muted"}, "The task video cannot be played here."));
    }
    figure.append(el("figcaption", {}, el("strong", {}, task.name), el("br"),
      "frames " + task.frame_start + "–" + task.frame_end + " (" + task.frame_count + " at " + task.frame_rate +
      " fps), " + task.width + "×" + task.height + ", " + task.duration));
    return figure;
  }

  async function followTry() {
    const job = await getJson(tryJob);
    document.getElementById("try-progress").value = job.progress;
    let text = job.id + ": " + job.state + (job.stage && job.stage !== job.state ? " (" + job.stage + ")" : "") +
      ", " + job.progress.toFixed(1) + "%";
    if (job.last_error) text += " — " + job.last_error;
    if (job.state === "done" && job.tasks && !tryShown) {
      tryShown = true;
      document.getElementById("try-tasks").replaceChildren(...job.tasks.map(taskFigure));
    }
    if (job.state === "done") {
      const count = job.tasks ? job.tasks.length : 0;
      text += " — " + count + (count === 1 ? " task" : " tasks");
      const annotation = job.result && job.result.annotation;
      if (job.warning) text += " — " + job.warning;
      else if (annotation) text += ", " + annotation.boxes + (annotation.boxes === 1 ? " box" : " boxes") + " kept";
    }
    tryStatus(text, job.state === "failed");
    if (job.state === "done" || job.state === "failed" || job.state === "cancelled") tryJob = null;
  }

  const form = document.getElementById("try-form");
  if (form) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = new FormData(form);
      const file = data.get("video");
      if (!file || !file.name) data.delete("video");
      if (!String(data.get("content_path") || "").trim()) data.delete("content_path");
      const submit = document.getElementById("try-submit");
      submit.disabled = true;
      tryStatus("Uploading…", false);
      document.getElementById("try-tasks").replaceChildren();
      tryShown = false;
      try {
        const response = await fetch(form.action, {method: "POST", body: data, credentials: "same-origin",
                                                   headers: {"X-CSRF-Token": csrf, Accept: "application/json"}});
        const answer = await response.json().catch(() => ({message: "HTTP " + response.status}));
        if (response.status === 202 || response.status === 200) {
          tryJob = answer.job_url;
          tryStatus(answer.job_id + ": " + (answer.state || "queued") + " — " + (answer.message || ""), false);
        } else {
          const message = answer.message || Object.entries(answer).map(([k, v]) => k + ": " + v).join("; ");
          tryStatus("Refused (" + response.status + "): " + message, true);
        }
      } catch (error) {
        tryStatus("Upload failed: " + error, true);
      } finally {
        submit.disabled = false;
      }
    });
  }

  window.setTimeout(refresh, pollMs);
})();
