// The Compare tab's piano rolls (studio/audio/roll_svg.py): a cursor that follows each side's audio,
// and a click on a roll that moves its audio there. A roll's player is the audio of its own side (the
// ".side-audio" player in the same column). Gradio's waveform player keeps its media element in a
// shadow root and loads the file as a blob, so the players are found through shadow roots, and every
// element that starts playing is remembered (the roll's data-audio file name is a last fallback).
(() => {
  if (window.studioRoll) return;
  const played = new Set();
  const byName = new Map();
  const nameOf = (m) => {
    try { return decodeURIComponent((m.currentSrc || m.src || "").split("?")[0].split("/").pop()); }
    catch (e) { return ""; }
  };
  const play = HTMLMediaElement.prototype.play;
  HTMLMediaElement.prototype.play = function (...args) {
    played.add(this);
    byName.set(nameOf(this), this);
    return play.apply(this, args);
  };
  const hostIn = (m, col) => {  // is the media element inside col, through any shadow roots?
    for (let n = m; n; n = n.getRootNode().host) if (col.contains(n)) return true;
    return false;
  };
  const columnOf = (svg) => {  // the first ancestor holding a side player is the side's column
    for (let el = svg.parentElement; el && el !== document.body; el = el.parentElement) {
      if (el.querySelector(".side-audio")) return el;
    }
    return null;
  };
  const audiosIn = (col) => {
    const found = [...col.querySelectorAll(".side-audio audio")];
    for (const el of col.querySelectorAll(".side-audio *")) {
      if (el.shadowRoot) found.push(...el.shadowRoot.querySelectorAll("audio"));
    }
    for (const m of played) if (hostIn(m, col)) found.push(m);
    return found;
  };
  const mediaFor = (svg) => {
    const col = columnOf(svg);
    const all = col ? audiosIn(col) : [];
    return all.find((m) => !m.paused) || all.find((m) => m.currentTime > 0) || all[0] || byName.get(svg.dataset.audio);
  };
  function tick() {
    for (const svg of document.querySelectorAll("svg.studio-roll[data-audio]")) {
      const cursor = svg.querySelector(".roll-cursor");
      const m = svg.dataset.audio && cursor ? mediaFor(svg) : null;
      if (!m) continue;
      const x = Math.min(m.currentTime || 0, parseFloat(svg.dataset.seconds));
      cursor.setAttribute("x1", x); cursor.setAttribute("x2", x);
      cursor.setAttribute("visibility", m.currentTime > 0 || !m.paused ? "visible" : "hidden");
      svg.dataset.playhead = x.toFixed(2);
    }
    requestAnimationFrame(tick);
  }
  document.addEventListener("click", (ev) => {
    const svg = ev.target.closest && ev.target.closest("svg.studio-roll[data-audio]");
    const m = svg && mediaFor(svg);
    if (!m) return;
    const box = svg.getBoundingClientRect();
    m.currentTime = Math.max(0, (ev.clientX - box.left) / box.width * parseFloat(svg.dataset.seconds));
  });
  window.studioRoll = { played, byName };
  requestAnimationFrame(tick);
})();
