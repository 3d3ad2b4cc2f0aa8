// What every operator page's script shares: building elements (values go in as text, never as
// HTML), reading the JSON API, and task videos that say so beside them when they cannot play.
"use strict";
(function () {
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name.startsWith("data-")) node.setAttribute(name, value);
      else node[name] = value;
    }
    for (const child of children) {
      if (child === null || child === undefined || child === "") continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  async function getJson(url) {
    const response = await fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}});
    if (response.status === 401) { window.location.reload(); throw new Error("logged out"); }
    if (!response.ok) throw new Error(url + ": " + response.status);
    return response.json();
  }

  // Addresses this page's Content-Security-Policy blocked (the console says so; the page must too).
  const blocked = [];
  document.addEventListener("securitypolicyviolation", (event) => {
    blocked.push([event.blockedURI, event.effectiveDirective || event.violatedDirective]);
  });
  const MEDIA_ERRORS = {1: "loading was aborted", 2: "a network error", 3: "the video could not be decoded",
                        4: "nothing playable at its address"};

  async function whyNot(video) {
    const src = video.currentSrc || video.src;
    const reasons = [];
    for (const [uri, directive] of blocked) {
      if (uri && src.startsWith(uri)) {
        reasons.push("this page's Content-Security-Policy (" + directive + ") blocked it: the video is at " +
                     new URL(src).origin + ", the page at " + window.location.origin);
        break;
      }
    }
    if (!reasons.length && new URL(src, window.location.href).origin === window.location.origin) {
      try {  // the service's own answer says why (404 no such object, 401 logged out, ...)
        const response = await fetch(src, {credentials: "same-origin", headers: {Range: "bytes=0-0"}});
        if (!response.ok) {
          const body = await response.json().catch(() => ({}));
          reasons.push("HTTP " + response.status + (body.message ? ": " + body.message : ""));
        }
      } catch (error) {
        reasons.push(String(error));
      }
    }
    const error = video.error;
    if (error) reasons.push((MEDIA_ERRORS[error.code] || "error " + error.code) + (error.message ? " (" + error.message + ")" : ""));
    return reasons.join("; ") || "no reason given";
  }

  // `note` (hidden until needed) says why `video` cannot be played, once it fails.
  function watchVideo(video, note) {
    const show = async () => {
      note.textContent = "This task video could not be played: " + await whyNot(video);
      note.hidden = false;
    };
    video.addEventListener("error", show);
    if (video.error) show();  // it failed before this script ran
  }

  window.pages = {el, getJson, watchVideo};
})();
