/* multidiff report: a point-cloud viewer on a 2D canvas, nothing else needed.
   Each <canvas class="cloud" data-points="ID"> shows the flat [x0, y0, z0, x1, ...] list in the
   <script type="application/json" id="ID">; z is up. Drag to rotate, wheel to zoom, double-click to reset. */
(function () {
  "use strict";
  var VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

  function colour(f, shade) {  // f in [0, 1] along viridis, darkened by shade in [0, 1]
    var x = Math.min(0.9999, Math.max(0, f)) * (VIRIDIS.length - 1), i = Math.floor(x), t = x - i;
    var a = VIRIDIS[i], b = VIRIDIS[i + 1], k = 0.55 + 0.45 * shade;
    return "rgb(" + [0, 1, 2].map(function (c) { return Math.round((a[c] + (b[c] - a[c]) * t) * k); }).join(",") + ")";
  }

  function Viewer(canvas, flat) {
    var n = Math.floor(flat.length / 3), lo = [Infinity, Infinity, Infinity], hi = [-Infinity, -Infinity, -Infinity];
    for (var i = 0; i < n; i++) for (var c = 0; c < 3; c++) {
      lo[c] = Math.min(lo[c], flat[3 * i + c]); hi[c] = Math.max(hi[c], flat[3 * i + c]);
    }
    var centre = [0, 1, 2].map(function (c) { return (lo[c] + hi[c]) / 2; }), radius = 1e-9;
    for (i = 0; i < n; i++) {
      var dx = flat[3 * i] - centre[0], dy = flat[3 * i + 1] - centre[1], dz = flat[3 * i + 2] - centre[2];
      radius = Math.max(radius, Math.sqrt(dx * dx + dy * dy + dz * dz));
    }
    this.canvas = canvas; this.flat = flat; this.n = n; this.centre = centre; this.radius = radius;
    this.zlo = lo[2]; this.zspan = (hi[2] - lo[2]) || 1;
    this.reset();
  }

  Viewer.prototype.reset = function () { this.yaw = -0.6; this.pitch = 0.35; this.zoom = 1; this.draw(); };

  Viewer.prototype.draw = function () {
    var ctx = this.canvas.getContext("2d"), w = this.canvas.width, h = this.canvas.height;
    var cosYaw = Math.cos(this.yaw), sinYaw = Math.sin(this.yaw);
    var cosPitch = Math.cos(this.pitch), sinPitch = Math.sin(this.pitch);
    var scale = 0.46 * Math.min(w, h) * this.zoom / this.radius;
    var screenX = new Float32Array(this.n), screenY = new Float32Array(this.n), depth = new Float32Array(this.n);
    var order = new Array(this.n);
    for (var i = 0; i < this.n; i++) {
      var x = this.flat[3 * i] - this.centre[0], y = this.flat[3 * i + 1] - this.centre[1];
      var z = this.flat[3 * i + 2] - this.centre[2];
      var across = cosYaw * x - sinYaw * y, away = sinYaw * x + cosYaw * y;  // turn about the vertical axis
      var up = cosPitch * z - sinPitch * away;                                // then tilt towards the viewer
      depth[i] = sinPitch * z + cosPitch * away;
      screenX[i] = w / 2 + scale * across;
      screenY[i] = h / 2 - scale * up;
      order[i] = i;
    }
    order.sort(function (a, b) { return depth[b] - depth[a]; });  // far points first, near ones drawn over them
    ctx.clearRect(0, 0, w, h);
    var size = Math.max(2, Math.min(4, 110 / Math.sqrt(this.n + 1)));
    for (var k = 0; k < order.length; k++) {
      var j = order[k], near = 0.5 - depth[j] / (2 * this.radius);
      ctx.fillStyle = colour((this.flat[3 * j + 2] - this.zlo) / this.zspan, near);
      ctx.fillRect(screenX[j] - size / 2, screenY[j] - size / 2, size, size);
    }
  };

  function attach(canvas) {
    var source = document.getElementById(canvas.dataset.points);
    if (!source) return;
    var view = new Viewer(canvas, JSON.parse(source.textContent)), last = null;
    canvas.addEventListener("pointerdown", function (e) { last = [e.clientX, e.clientY]; canvas.setPointerCapture(e.pointerId); });
    canvas.addEventListener("pointerup", function () { last = null; });
    canvas.addEventListener("pointermove", function (e) {
      if (!last) return;
      view.yaw += (e.clientX - last[0]) * 0.01;
      view.pitch = Math.max(-1.5, Math.min(1.5, view.pitch + (e.clientY - last[1]) * 0.01));
      last = [e.clientX, e.clientY];
      view.draw();
    });
    canvas.addEventListener("wheel", function (e) {
      e.preventDefault();
      view.zoom = Math.max(0.3, Math.min(8, view.zoom * Math.exp(-e.deltaY * 0.001)));
      view.draw();
    }, { passive: false });
    canvas.addEventListener("dblclick", function () { view.reset(); });
  }

  document.querySelectorAll("canvas.cloud").forEach(attach);
})();
