// An upload's page: each task video with its boxes drawn over it (label, score; one colour per track
// where auto-annotation tracked the object, else the label's colour), and its frames listed: the
// position in the task video, the source frame it came from, its time, its boxes. A row seeks the
// video to its frame. Frames come from GET /api/uploads/<id>/tasks/<id>/frames when a task is in view.
"use strict";
(function () {
  const {el, getJson, watchVideo} = window.pages;
  // Distinct colours for tracks (colour-blind-friendlier first), repeated by trackId.
  const TRACK_COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
                        "#fabed4", "#469990", "#dcbeff", "#9a6324", "#fffac8", "#800000", "#aaffc3", "#000075"];

  function colorOf(box) {
    if (Number.isInteger(box.track_id)) {
      const n = TRACK_COLORS.length;
      return TRACK_COLORS[((box.track_id % n) + n) % n];
    }
    return box.color || "#ffe119";
  }

  function caption(box) {
    return box.label + (box.score !== null ? " " + box.score.toFixed(2) : "") +
      (Number.isInteger(box.track_id) ? " #" + box.track_id : "");
  }

  function darkText(hex) {  // black or white text on a colour
    const v = hex.replace("#", "");
    const full = v.length === 3 ? v.split("").map((c) => c + c).join("") : v.slice(0, 6);
    const [r, g, b] = [0, 2, 4].map((i) => parseInt(full.slice(i, i + 2), 16));
    return 0.299 * r + 0.587 * g + 0.114 * b > 150;
  }

  // The frame shown at a time of the task video (constant rate: frame k from k / rate).
  function frameIndex(data, seconds, exact) {
    const rate = data.frame_rate || 1;
    const index = exact ? Math.round(seconds * rate) : Math.floor(seconds * rate + 1e-6);
    return Math.max(0, Math.min(data.frames.length - 1, index));
  }

  function draw(figure, data, seconds, exact) {
    const video = figure.querySelector("video");
    const canvas = figure.querySelector("canvas.boxes");
    const shownW = video.clientWidth, shownH = video.clientHeight;
    const width = data.width || video.videoWidth, height = data.height || video.videoHeight;
    if (!shownW || !shownH || !width || !height || !data.frames.length) return;
    canvas.width = shownW;
    canvas.height = shownH;
    const scale = Math.min(shownW / width, shownH / height);  // the picture inside the element (contain)
    const left = (shownW - width * scale) / 2, top = (shownH - height * scale) / 2;
    const frame = data.frames[frameIndex(data, seconds, exact)];
    const context = canvas.getContext("2d");
    context.clearRect(0, 0, shownW, shownH);
    context.lineWidth = 2;
    context.font = "12px system-ui, sans-serif";
    const colors = [];
    for (const box of frame.boxes) {
      const color = colorOf(box);
      colors.push(color);
      const x = left + box.x * scale, y = top + box.y * scale;
      context.strokeStyle = color;
      context.strokeRect(x, y, box.w * scale, box.h * scale);
      const text = caption(box);
      const labelTop = y >= 15 ? y - 15 : y;
      context.fillStyle = color;
      context.fillRect(x - 1, labelTop, context.measureText(text).width + 6, 15);
      context.fillStyle = darkText(color) ? "#000" : "#fff";
      context.fillText(text, x + 2, labelTop + 12);
    }
    figure.dataset.shownFrame = frame.frame;
    figure.dataset.shownBoxes = frame.boxes.length;
    figure.dataset.shownColors = JSON.stringify(colors);
    const rows = figure.querySelectorAll("table.frames tbody tr");
    rows.forEach((row) => row.classList.toggle("current", row.dataset.frame === String(frame.frame)));
  }

  function boxesText(boxes) {
    if (!boxes.length) return "none";
    return boxes.map((box) => caption(box) + " (" + Math.round(box.x) + ", " + Math.round(box.y) + ", " +
                                Math.round(box.w) + "×" + Math.round(box.h) + ")").join(" · ");
  }

  function listFrames(figure, data) {
    const video = figure.querySelector("video");
    const rows = data.frames.map((frame) => {
      const row = el("tr", {"data-frame": frame.frame},
        el("td", {class: "frame"}, frame.frame),
        el("td", {class: "source"}, frame.source_frame === null ? "" : frame.source_frame),
        el("td", {class: "time"}, frame.time === null ? "" : frame.time.toFixed(2) + " s"),
        el("td", {class: "boxes"}, boxesText(frame.boxes)));
      row.addEventListener("click", () => {
        if (video && data.frame_rate) { video.pause(); video.currentTime = (frame.frame - 0.5) / data.frame_rate; }
      });
      return row;
    });
    figure.querySelector("table.frames tbody").replaceChildren(...rows);
    figure.querySelector(".frame-count").textContent = String(data.frames.length);
  }

  function follow(figure, data) {
    const video = figure.querySelector("video");
    if (!video) return;
    const redraw = () => draw(figure, data, video.currentTime, false);
    if ("requestVideoFrameCallback" in video) {  // each frame as it is presented, at its own time
      const onFrame = (now, meta) => { draw(figure, data, meta.mediaTime, true); video.requestVideoFrameCallback(onFrame); };
      video.requestVideoFrameCallback(onFrame);
    } else {
      video.addEventListener("timeupdate", redraw);
    }
    for (const event of ["loadeddata", "seeked", "pause"]) video.addEventListener(event, redraw);
    window.addEventListener("resize", redraw);
    if (video.readyState >= 2) redraw();
  }

  async function load(figure) {
    try {
      const data = await getJson(figure.dataset.framesUrl);
      listFrames(figure, data);
      follow(figure, data);
    } catch (error) {
      const note = figure.querySelector(".frames-error");
      note.textContent = "The frames could not be read: " + error;
      note.hidden = false;
    }
  }

  const figures = document.querySelectorAll("figure.task[data-frames-url]");
  for (const figure of figures) {
    const video = figure.querySelector("video");
    if (video) watchVideo(video, figure.querySelector(".video-error"));
  }
  // Frames are read for the tasks in view (an hour of video is a hundred tasks).
  const observer = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (entry.isIntersecting) { observer.unobserve(entry.target); load(entry.target); }
    }
  }, {rootMargin: "400px"});
  figures.forEach((figure) => observer.observe(figure));
})();
