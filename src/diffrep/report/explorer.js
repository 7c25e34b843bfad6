// The checkpoint explorer (diffrep/report/explorer.py writes its data into #explorer-data).
// Every string from the run is shown with textContent, never parsed as HTML.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("explorer-data").textContent);
  var checkpoints = data.checkpoints;
  var root = document.getElementById("explorer");
  var slider = document.getElementById("explorer-slider");
  var label = document.getElementById("explorer-label");
  var tooltip = document.getElementById("explorer-tooltip");
  var SVG = "http://www.w3.org/2000/svg";
  var SCALE = 3; // screen pixels per sample pixel
  var VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  var current = -1;
  var images = {}; // step -> decoded samples image

  function byId(id) { return document.getElementById(id); }
  function outcomeColour(code) { return data.outcome_colours[code]; }

  function viridis(u) {
    u = Math.min(1, Math.max(0, u)) * (VIRIDIS.length - 1);
    var i = Math.min(Math.floor(u), VIRIDIS.length - 2), f = u - i, a = VIRIDIS[i], b = VIRIDIS[i + 1];
    return "rgb(" + [0, 1, 2].map(function (k) { return Math.round(a[k] + f * (b[k] - a[k])); }).join(",") + ")";
  }

  function legend() {
    var box = byId("explorer-legend");
    data.outcomes.forEach(function (name, code) {
      var item = document.createElement("span");
      var swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.borderColor = outcomeColour(code);
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(name));
      box.appendChild(item);
    });
    byId("explorer-layer").textContent = data.layer;
  }

  // -- samples: the scores' PNG of the in-distribution conditions, target and outcome per tile --------
  function trainIndices() {
    var out = [];
    data.evaluation.group.forEach(function (g, i) { if (g === 0) out.push(i); });
    return out;
  }
  var TRAIN = trainIndices();

  function drawSamples(cp) {
    var canvas = byId("explorer-samples"), caption = byId("explorer-samples-caption");
    if (!cp.samples) {
      canvas.width = canvas.height = 10;
      caption.textContent = "This checkpoint was not scored.";
      root.dataset.samplesStep = String(cp.step);
      return;
    }
    caption.textContent = "The " + TRAIN.length + " in-distribution evaluation samples (" + data.sampler +
      "); the cross marks each tile's requested (x, y), the border its outcome.";
    var image = images[cp.step];
    if (!image) {
      image = images[cp.step] = new Image();
      image.onload = function () { if (checkpoints[current] === cp) drawSamples(cp); };
      image.src = cp.samples;
    }
    if (!image.complete || !image.naturalWidth) return; // drawn by onload
    canvas.width = image.naturalWidth * SCALE;
    canvas.height = image.naturalHeight * SCALE;
    var ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
    var n = data.image_size;
    TRAIN.forEach(function (index, k) {
      var col = k % data.tile_columns, row = Math.floor(k / data.tile_columns);
      var left = (1 + col * (n + 1)) * SCALE, top = (1 + row * (n + 1)) * SCALE;
      ctx.lineWidth = 2;
      ctx.strokeStyle = outcomeColour(cp.outcome[index]);
      ctx.strokeRect(left - 1, top - 1, n * SCALE + 2, n * SCALE + 2);
      var c = data.evaluation.conditions[index];
      var x = left + (c[0] - data.offset) * SCALE, y = top + (c[1] - data.offset) * SCALE;
      ctx.lineWidth = 1;
      ctx.strokeStyle = "#f0e442";
      ctx.beginPath();
      ctx.moveTo(x - 4, y); ctx.lineTo(x + 4, y); ctx.moveTo(x, y - 4); ctx.lineTo(x, y + 4);
      ctx.stroke();
    });
    root.dataset.samplesStep = String(cp.step);
  }

  // -- the (x, y) plane: outcome per evaluation condition, arrow to the located bump -----------------
  function drawMap(cp) {
    var canvas = byId("explorer-map"), ctx = canvas.getContext("2d");
    var size = canvas.width, pad = 10, L = data.latent_size;
    var at = function (v) { return pad + v / L * (size - 2 * pad); };
    ctx.clearRect(0, 0, size, size);
    ctx.strokeStyle = "#888";
    ctx.setLineDash([4, 3]);
    ctx.strokeRect(at(data.offset), at(data.offset), at(data.offset + data.image_size) - at(data.offset),
                   at(data.offset + data.image_size) - at(data.offset));
    ctx.setLineDash([]);
    if (!cp.outcome) return;
    data.evaluation.conditions.forEach(function (c, i) {
      var x = at(c[0]), y = at(c[1]);
      ctx.fillStyle = outcomeColour(cp.outcome[i]);
      ctx.fillRect(x - 4, y - 4, 8, 8);
      if (data.evaluation.group[i] !== 0) {
        ctx.strokeStyle = "#000";
        ctx.lineWidth = 1;
        ctx.beginPath(); ctx.arc(x, y, 7, 0, 2 * Math.PI); ctx.stroke();
      }
      var e = cp.error[i];
      if (e && e[0] !== null && e[1] !== null) {
        ctx.strokeStyle = "#222";
        ctx.beginPath(); ctx.moveTo(x, y); ctx.lineTo(at(c[0] + e[0]), at(c[1] + e[1])); ctx.stroke();
      }
    });
  }

  // -- the code: PCA and UMAP, coloured by x and by y -------------------------------------------------
  var plotted = {}; // canvas id -> [{px, py, condition index}] for hovering
  function drawCode(cp) {
    var probe = data.probe;
    ["pca", "umap"].forEach(function (view) {
      ["x", "y"].forEach(function (axis, a) {
        var canvas = byId("explorer-" + view + "-" + axis), ctx = canvas.getContext("2d");
        var size = canvas.width, points = cp[view];
        ctx.clearRect(0, 0, size, size);
        ctx.fillStyle = "#333";
        ctx.font = "12px sans-serif";
        ctx.fillText(view.toUpperCase() + ", coloured by " + axis, 6, 14);
        plotted[canvas.id] = [];
        if (!points || !probe) {
          ctx.fillText("not available at this checkpoint", 6, size / 2);
          return;
        }
        var extent = 0;
        points.forEach(function (p) { extent = Math.max(extent, Math.abs(p[0]), Math.abs(p[1])); });
        extent = extent || 1;
        var L = data.latent_size;
        points.forEach(function (p, i) {
          var px = size / 2 + p[0] / extent * (size / 2 - 12), py = size / 2 - p[1] / extent * (size / 2 - 12);
          ctx.fillStyle = viridis(probe.conditions[i][a] / L);
          ctx.beginPath(); ctx.arc(px, py, 3, 0, 2 * Math.PI); ctx.fill();
          if (probe.heldout[i]) {
            ctx.strokeStyle = "#000";
            ctx.beginPath(); ctx.arc(px, py, 5, 0, 2 * Math.PI); ctx.stroke();
          }
          plotted[canvas.id].push([px, py, i]);
        });
      });
    });
    var missing = ["pca", "umap"].filter(function (v) { return !cp[v]; });
    byId("explorer-code-caption").textContent = missing.length ? missing.join(" and ").toUpperCase() +
      " not available at step " + cp.step + (missing.indexOf("umap") >= 0 ?
      " (UMAP: computed where the probe kept the activations, probe.keep_every, or at every checkpoint with probe.umap=true)" : "") : "";
  }

  function hover(ev) {
    var canvas = ev.target, box = canvas.getBoundingClientRect();
    var mx = (ev.clientX - box.left) * canvas.width / box.width, my = (ev.clientY - box.top) * canvas.height / box.height;
    var best = null, bestDistance = 64; // within 8 canvas pixels
    (plotted[canvas.id] || []).forEach(function (p) {
      var d = (p[0] - mx) * (p[0] - mx) + (p[1] - my) * (p[1] - my);
      if (d < bestDistance) { bestDistance = d; best = p; }
    });
    if (!best) { tooltip.hidden = true; return; }
    var c = data.probe.conditions[best[2]];
    tooltip.textContent = "(x, y) = (" + c[0].toFixed(2) + ", " + c[1].toFixed(2) + ")" +
      (data.probe.heldout[best[2]] ? ", held out" : "");
    tooltip.style.left = (ev.pageX + 12) + "px";
    tooltip.style.top = (ev.pageY + 12) + "px";
    tooltip.hidden = false;
  }

  // -- curves over training, one step axis, with a cursor ----------------------------------------------
  var curves = data.curves;
  var allSteps = curves.training_steps.concat(curves.score_steps, curves.probe_steps);
  var minStep = Math.min.apply(null, allSteps.length ? allSteps : [0]);
  var maxStep = Math.max.apply(null, allSteps.length ? allSteps : [1]);
  var WIDTH = 900, HEIGHT = 130, LEFT = 60, RIGHT = 170;
  var cursors = [];

  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }
  function xAt(step) { return LEFT + (maxStep > minStep ? (step - minStep) / (maxStep - minStep) : 0.5) * (WIDTH - LEFT - RIGHT); }

  function panel(title, series, options) {
    var svg = el("svg", {width: WIDTH, height: HEIGHT, viewBox: "0 0 " + WIDTH + " " + HEIGHT});
    var values = [];
    series.forEach(function (s) { s.values.forEach(function (v) { if (v !== null && (!options.log || v > 0)) values.push(v); }); });
    var lo = options.range ? options.range[0] : Math.min.apply(null, values.length ? values : [0]);
    var hi = options.range ? options.range[1] : Math.max.apply(null, values.length ? values : [1]);
    if (options.log) { lo = Math.log10(lo); hi = Math.log10(hi); }
    if (hi <= lo) { hi = lo + 1; }
    var yAt = function (v) { return 10 + (1 - ((options.log ? Math.log10(v) : v) - lo) / (hi - lo)) * (HEIGHT - 30); };
    if (options.phases) {
      curves.probe_steps.forEach(function (step, i) {
        var next = i + 1 < curves.probe_steps.length ? curves.probe_steps[i + 1] : maxStep;
        el("rect", {x: xAt(step), y: 10, width: Math.max(xAt(next) - xAt(step), 1), height: HEIGHT - 30,
                    fill: data.phase_colours[curves.phase[i]] || "#fff"}, svg);
      });
    }
    el("rect", {x: LEFT, y: 10, width: WIDTH - LEFT - RIGHT, height: HEIGHT - 30, fill: "none", stroke: "#999"}, svg);
    (options.thresholds || []).forEach(function (t) {
      el("line", {x1: LEFT, x2: WIDTH - RIGHT, y1: yAt(t.value), y2: yAt(t.value), stroke: t.colour,
                  "stroke-dasharray": "5,3"}, svg);
    });
    series.forEach(function (s, k) {
      var d = "";
      s.values.forEach(function (v, i) {
        if (v === null || (options.log && v <= 0)) return;
        d += (d ? "L" : "M") + xAt(s.steps[i]).toFixed(1) + "," + yAt(v).toFixed(1);
      });
      if (d) el("path", {d: d, fill: "none", stroke: s.colour, "stroke-width": s.width || 1.5}, svg);
      var key = el("text", {x: WIDTH - RIGHT + 8, y: 22 + 14 * k, "font-size": 11, fill: s.colour}, svg);
      key.textContent = s.name;
    });
    var t = el("text", {x: LEFT, y: 8, "font-size": 11}, svg);
    t.textContent = title;
    [[lo, HEIGHT - 20], [hi, 18]].forEach(function (p) {
      var v = options.log ? Math.pow(10, p[0]) : p[0];
      var tick = el("text", {x: LEFT - 4, y: p[1], "font-size": 10, "text-anchor": "end"}, svg);
      tick.textContent = Math.abs(v) >= 0.01 || v === 0 ? +v.toFixed(2) : v.toExponential(1);
    });
    [minStep, Math.round((minStep + maxStep) / 2), maxStep].forEach(function (step) {
      var tick = el("text", {x: xAt(step), y: HEIGHT - 6, "font-size": 10, "text-anchor": "middle"}, svg);
      tick.textContent = "step " + step;
    });
    cursors.push(el("line", {x1: 0, x2: 0, y1: 10, y2: HEIGHT - 20, stroke: "#000", "stroke-width": 1.5,
                             "class": "explorer-cursor"}, svg));
    byId("explorer-curves").appendChild(svg);
  }

  function drawCurves() {
    var palette = ["#000000", "#0072b2", "#56b4e9", "#009e73", "#e69f00", "#cc79a7", "#d55e00", "#999999"];
    var loss = Object.keys(curves.loss).map(function (name, k) {
      return {name: name === "loss" ? "loss (all t)" : name.replace("loss_", ""), steps: curves.training_steps,
              values: curves.loss[name], colour: palette[k % palette.length], width: name === "loss" ? 2 : 1.2};
    });
    panel("denoising loss per timestep bucket (log scale)", loss, {log: true});
    var rates = curves.lr.filter(function (v) { return v !== null; });
    panel("learning rate", [{name: "lr", steps: curves.training_steps, values: curves.lr, colour: "#0072b2"}],
          {range: [0, 1.05 * Math.max.apply(null, rates.length ? rates : [1])]});
    var fractions = data.outcomes.map(function (name, code) {
      return {name: name === "accurate" ? "accurate = accuracy" : name, steps: curves.score_steps,
              values: curves.fractions[name], colour: outcomeColour(code), width: name === "accurate" ? 2.5 : 1.5};
    });
    panel("generation: fraction of in-distribution samples per outcome", fractions, {range: [0, 1], phases: true});
    var r = curves.representation;
    panel("representation of " + curves.layer + ": the phase rule's numbers", [
      {name: "condition_share", steps: curves.probe_steps, values: r.condition_share, colour: "#0072b2"},
      {name: "order gain", steps: curves.probe_steps, values: r.order_gain, colour: "#d55e00"},
      {name: "knn_overlap", steps: curves.probe_steps, values: r.knn_overlap, colour: "#999999", width: 1}
    ], {range: [-0.05, 1.05], phases: true, thresholds: [
      {value: data.thresholds.condition_share, colour: "#0072b2"}, {value: data.thresholds.order_gain, colour: "#d55e00"}]});
  }

  function moveCursors(step) {
    var x = xAt(step).toFixed(1);
    cursors.forEach(function (c) { c.setAttribute("x1", x); c.setAttribute("x2", x); c.setAttribute("data-step", step); });
  }

  // -- one checkpoint ----------------------------------------------------------------------------
  function show(i) {
    i = Math.max(0, Math.min(checkpoints.length - 1, i));
    current = i;
    slider.value = String(i);
    var cp = checkpoints[i];
    label.textContent = "step " + cp.step + (cp.phase ? ", phase " + cp.phase : "") +
      (cp.accuracy !== null ? ", accuracy " + cp.accuracy.toFixed(3) : "") +
      "  (checkpoint " + (i + 1) + " of " + checkpoints.length + ")";
    root.dataset.step = String(cp.step);
    drawSamples(cp);
    drawMap(cp);
    drawCode(cp);
    moveCursors(cp.step);
  }

  legend();
  drawCurves();
  if (!checkpoints.length) {
    label.textContent = "no scored or probed checkpoint yet";
    slider.disabled = true;
    return;
  }
  slider.max = String(checkpoints.length - 1);
  slider.addEventListener("input", function () { show(Number(slider.value)); });
  document.addEventListener("keydown", function (ev) {
    if (ev.target === slider) return; // the focused slider steps itself and fires "input"
    if (ev.key === "ArrowRight") { show(current + 1); ev.preventDefault(); }
    if (ev.key === "ArrowLeft") { show(current - 1); ev.preventDefault(); }
  });
  ["pca-x", "pca-y", "umap-x", "umap-y"].forEach(function (id) {
    byId("explorer-" + id).addEventListener("mousemove", hover);
    byId("explorer-" + id).addEventListener("mouseleave", function () { tooltip.hidden = true; });
  });
  show(checkpoints.length - 1);
})();
