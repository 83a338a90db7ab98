// The Compare tab's piano rolls (studio/audio/roll_svg.py): a cursor that follows each side's audio,
// and a click on a roll that moves its audio there. Gradio's player keeps its <audio> element out of
// the page, so every media element that starts playing is remembered by its file name, which the
// roll carries as data-audio.
(() => {
  if (window.studioRoll) return;
  const byName = new Map();
  const nameOf = (m) => {
    try { return decodeURIComponent((m.currentSrc || m.src || "").split("?")[0].split("/").pop()); }
    catch (e) { return ""; }
  };
  const remember = (m) => { const n = nameOf(m); if (n) byName.set(n, m); };
  const play = HTMLMediaElement.prototype.play;
  HTMLMediaElement.prototype.play = function (...args) { remember(this); return play.apply(this, args); };
  document.addEventListener("play", (ev) => remember(ev.target), true);  // players that are in the page
  const mediaFor = (svg) => byName.get(svg.dataset.audio);
  function tick() {
    for (const svg of document.querySelectorAll("svg.studio-roll[data-audio]")) {
      const m = mediaFor(svg), cursor = svg.querySelector(".roll-cursor");
      if (!m || !cursor || !svg.dataset.audio) continue;
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
  window.studioRoll = { byName };
  requestAnimationFrame(tick);
})();
