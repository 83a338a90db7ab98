// "Play it in" on the Compare tab (studio/ui/compare_keys.py): the body of a gr.HTML's js_on_load,
// so `element` (the pad), `props` and `trigger` are gradio's. Notes come from every Web MIDI input
// port and from the on-screen keys (pointer or computer keys a w s e d ...). Record: a one-bar
// count-in, then the chosen bars, with a WebAudio click on every beat (the downbeat accented). The
// take goes to Python as JSON in props.value (setting it fires the pad's change event once):
// onset/duration in beats from the end of the count-in.
// Times are the events' own timestamps (performance.now()'s clock), so a busy page does not move
// notes; the click is scheduled ahead on the audio clock and only guides the player.
(() => {
  const BEATS_PER_BAR = 4;
  const KEY_BASE = 60;  // computer key "a" plays middle C
  const COMPUTER_KEYS = "awsedftgyhujkolp;";  // a=C w=C# s=D ... k=C (an octave up) ... ;=E
  const pad = () => element.querySelector(".keys-pad");
  const q = (sel) => element.querySelector(sel);
  const st = {
    state: "idle", held: new Map(), notes: [], start: 0, end: 0, beat: 500, bpm: 100, bars: 4,
    take: 0, inputs: "", monitor: true, clicks: [], timer: null, ctx: null, voices: new Map(),
    sustain: false, deferred: new Set(),
  };

  function numberOf(id, fallback, lo, hi) {  // a gradio Number beside the pad, by its elem_id
    const box = document.querySelector(`#${id} input`);
    const v = parseFloat(box ? box.value : "");
    return Number.isFinite(v) ? Math.min(hi, Math.max(lo, v)) : fallback;
  }

  function audio() {
    if (!st.ctx) {
      try { st.ctx = new (window.AudioContext || window.webkitAudioContext)(); } catch (e) { st.ctx = null; }
    }
    if (st.ctx && st.ctx.state === "suspended") st.ctx.resume().catch(() => {});
    return st.ctx;
  }

  function click(at, accent) {  // one metronome tick at audio time `at`
    const ctx = st.ctx;
    const osc = ctx.createOscillator(), gain = ctx.createGain();
    osc.frequency.value = accent ? 1600 : 1000;
    gain.gain.setValueAtTime(accent ? 0.5 : 0.25, at);
    gain.gain.exponentialRampToValueAtTime(0.001, at + 0.05);
    osc.connect(gain).connect(ctx.destination);
    osc.start(at);
    osc.stop(at + 0.06);
    st.clicks.push(osc);
  }

  function sound(pitch, velocity, on) {  // the keys' own quiet tone, when "Hear the notes" is on
    const ctx = st.ctx;
    if (on && ctx && st.monitor) {
      const osc = ctx.createOscillator(), gain = ctx.createGain();
      osc.type = "triangle";
      osc.frequency.value = 440 * Math.pow(2, (pitch - 69) / 12);
      gain.gain.setValueAtTime(0.15 * velocity / 127, ctx.currentTime);
      osc.connect(gain).connect(ctx.destination);
      osc.start();
      st.voices.set(pitch, [osc, gain]);
    } else if (!on && st.voices.has(pitch)) {
      const [osc, gain] = st.voices.get(pitch);
      gain.gain.setTargetAtTime(0, ctx.currentTime, 0.05);
      osc.stop(ctx.currentTime + 0.3);
      st.voices.delete(pitch);
    }
  }

  function light(pitch, on) {
    const key = q(`.keys-board [data-pitch="${pitch}"]`);
    if (key) key.classList.toggle("down", on);
  }

  function noteOn(pitch, velocity, t) {
    if (st.held.has(pitch)) noteOff(pitch, t, true);  // a re-strike ends the sounding note
    st.deferred.delete(pitch);
    st.held.set(pitch, { t, velocity });
    light(pitch, true);
    sound(pitch, velocity, true);
  }

  function noteOff(pitch, t, force) {
    if (!st.held.has(pitch)) return;
    if (st.sustain && !force) { st.deferred.add(pitch); light(pitch, false); return; }  // the pedal holds it
    const { t: on, velocity } = st.held.get(pitch);
    st.held.delete(pitch);
    light(pitch, false);
    sound(pitch, 0, false);
    if (st.state !== "idle" && on >= st.start - BEATS_PER_BAR * st.beat) {
      st.notes.push({ onset: (on - st.start) / st.beat, duration: (t - on) / st.beat, pitch, velocity });
    }
  }

  function onMidi(ev) {
    const [status, a, b] = ev.data;
    const t = ev.timeStamp > 0 ? ev.timeStamp : performance.now();
    const kind = status & 0xf0;
    if (kind === 0x90 && b > 0) noteOn(a, b, t);
    else if (kind === 0x80 || kind === 0x90) noteOff(a, t);
    else if (kind === 0xb0 && a === 64) {  // the sustain pedal
      st.sustain = b >= 64;
      if (!st.sustain) { for (const p of [...st.deferred]) noteOff(p, t, true); st.deferred.clear(); }
    }
  }

  function showInputs(text) {
    st.inputs = text;
    const box = q(".keys-inputs");
    if (box) box.textContent = text;
  }

  // The access is the page's (window.studioMidi), asked for on a click: Chrome asks the user before a
  // page may read MIDI. A pad mounted again (its accordion re-opened) takes the ports over at once.
  let access = null;
  function connect() {
    if (access) return Promise.resolve(access);
    if (window.studioMidi) return window.studioMidi.then(use);
    if (!navigator.requestMIDIAccess) {
      showInputs("This browser has no Web MIDI: play the keys below (or a w s e d f … on the computer keyboard).");
      return Promise.resolve(null);
    }
    window.studioMidi = navigator.requestMIDIAccess();
    return window.studioMidi.then(use, (e) => {
      window.studioMidi = null;  // asked again on the next click
      showInputs(`MIDI not allowed (${e.name || e}): play the keys below.`);
      return null;
    });
  }

  function use(a) {  // every input port, now and as ports come and go, plays into this pad
    access = a;
    const attach = () => {
      const names = [];
      for (const input of access.inputs.values()) {
        input.onmidimessage = onMidi;
        if (input.state !== "disconnected") names.push(input.name || input.id);
      }
      showInputs(names.length ? `MIDI in: ${names.join(", ")}` : "No MIDI input connected: play the keys below.");
    };
    access.onstatechange = attach;
    attach();
    return access;
  }

  function show() {  // the button, the beat counter and the state the tests read
    const p = pad();
    if (!p) return;
    p.dataset.state = st.state;
    p.dataset.take = String(st.take);
    const btn = q(".keys-record");
    if (btn) btn.textContent = st.state === "idle" ? "● Record" : "■ Stop";
    const beat = q(".keys-beat");
    if (!beat) return;
    const now = performance.now();
    if (st.state === "idle") {
      beat.textContent = st.take ? `Sent ${st.sent} note${st.sent === 1 ? "" : "s"} as the prompt.` : "";
    } else if (now < st.start) {
      beat.textContent = `Count-in ${Math.floor((now - st.start) / st.beat) + BEATS_PER_BAR + 1}`;
    } else {
      const b = Math.floor((now - st.start) / st.beat);
      const bar = Math.floor(b / BEATS_PER_BAR) + 1;
      beat.textContent = `Recording: bar ${bar} of ${st.bars}, beat ${(b % BEATS_PER_BAR) + 1}`;
    }
    if (st.inputs && q(".keys-inputs")) q(".keys-inputs").textContent = st.inputs;
    if (q(".keys-monitor")) q(".keys-monitor").checked = st.monitor;  // kept if the template re-renders
  }

  function record() {
    st.bpm = numberOf("compare-keys-bpm", 100, 30, 300);
    st.bars = Math.round(numberOf("compare-keys-bars", 4, 1, 32));
    st.beat = 60000 / st.bpm;
    const lead = 150;  // ms for the first click to be scheduled in time
    const t0 = performance.now() + lead;
    st.start = t0 + BEATS_PER_BAR * st.beat;
    st.end = st.start + st.bars * BEATS_PER_BAR * st.beat;
    st.notes = [];
    st.state = "count-in";
    const ctx = audio();
    if (ctx) {
      // Beat 0 of the count-in on the audio clock, lined up with performance.now()'s t0 where the
      // context says when its output is heard (so the click sounds on the beats the notes are timed by).
      const out = ctx.getOutputTimestamp ? ctx.getOutputTimestamp() : {};
      const a0 = out.performanceTime > 0 ? out.contextTime + (t0 - out.performanceTime) / 1000
                                         : ctx.currentTime + lead / 1000;
      const total = (1 + st.bars) * BEATS_PER_BAR;
      for (let i = 0; i < total; i++) click(a0 + (i * st.beat) / 1000, i % BEATS_PER_BAR === 0);
    }
    st.timer = setInterval(() => {
      if (st.state === "count-in" && performance.now() >= st.start) st.state = "recording";
      if (performance.now() >= st.end) finish(st.end);
      show();
    }, 30);
    show();
  }

  function finish(at) {  // the take ends: notes still held end here; the take goes to Python
    clearInterval(st.timer);
    for (const osc of st.clicks) { try { osc.stop(); } catch (e) { /* already done */ } }
    st.clicks = [];
    st.sustain = false;
    for (const pitch of [...st.held.keys()]) noteOff(pitch, at, true);
    st.state = "idle";
    st.take += 1;
    st.sent = st.notes.length;
    props.value = JSON.stringify({ bpm: st.bpm, bars: st.bars, notes: st.notes, take: st.take });  // -> change
    show();
    setTimeout(show, 300);  // the template may re-render after the value changes
  }

  // One set of listeners per page: a re-mounted pad replaces the old one's.
  if (window.studioKeysOff) window.studioKeysOff();
  const pointers = new Map();
  const down = (ev) => {
    const key = ev.target.closest("[data-pitch]");
    if (ev.target.closest(".keys-record")) {
      audio();
      if (st.state === "idle") { connect(); record(); } else finish(performance.now());
      return;
    }
    if (ev.target.closest(".keys-connect")) { audio(); connect(); return; }
    if (!key) return;
    ev.preventDefault();
    audio();
    const pitch = parseInt(key.dataset.pitch, 10);
    pointers.set(ev.pointerId, pitch);
    noteOn(pitch, 90, ev.timeStamp || performance.now());
  };
  const up = (ev) => {
    if (!pointers.has(ev.pointerId)) return;
    noteOff(pointers.get(ev.pointerId), ev.timeStamp || performance.now());
    pointers.delete(ev.pointerId);
  };
  const typing = (ev) => ev.target.closest && ev.target.closest("input, textarea, select, [contenteditable]");
  const keyPitch = (ev) => {
    const i = COMPUTER_KEYS.indexOf(ev.key.toLowerCase());
    const off = ev.ctrlKey || ev.metaKey || ev.altKey || typing(ev) || !pad() || !pad().offsetParent;  // hidden pad
    return i < 0 || off ? null : KEY_BASE + i;
  };
  const keyDown = (ev) => {
    const pitch = keyPitch(ev);
    if (pitch === null || ev.repeat) return;
    audio();
    noteOn(pitch, 90, ev.timeStamp || performance.now());
  };
  const keyUp = (ev) => {
    const pitch = keyPitch(ev);
    if (pitch !== null) noteOff(pitch, ev.timeStamp || performance.now());
  };
  const toggle = (ev) => { if (ev.target.closest(".keys-monitor")) st.monitor = ev.target.checked; };
  element.addEventListener("pointerdown", down);
  element.addEventListener("change", toggle);
  window.addEventListener("pointerup", up);
  window.addEventListener("pointercancel", up);
  window.addEventListener("keydown", keyDown);
  window.addEventListener("keyup", keyUp);
  window.studioKeysOff = () => {
    element.removeEventListener("pointerdown", down);
    element.removeEventListener("change", toggle);
    window.removeEventListener("pointerup", up);
    window.removeEventListener("pointercancel", up);
    window.removeEventListener("keydown", keyDown);
    window.removeEventListener("keyup", keyUp);
  };
  // For scripts and the browser tests: the state, and when the take's beat 0 is (performance.now() ms).
  window.studioKeys = { connect, state: () => st.state, clock: () => ({ start: st.start, beat: st.beat }) };
  if (window.studioMidi) connect();
  show();
})();
