/* multidiff report: the previews over training; the slider or a thumbnail picks the step shown. */
(function () {
  "use strict";
  document.querySelectorAll(".timeline").forEach(function (box) {
    var frames = JSON.parse(box.dataset.frames), slider = box.querySelector("input"),
        frame = box.querySelector(".frame"), label = box.querySelector("output"),
        buttons = box.querySelectorAll(".strip button");
    function show(i) {
      frame.src = frames[i].src;
      frame.alt = "preview at step " + frames[i].step;
      label.textContent = frames[i].step.toLocaleString("en");
      slider.value = i;
      buttons.forEach(function (b, k) { b.classList.toggle("current", k === i); });
    }
    slider.addEventListener("input", function () { show(Number(slider.value)); });
    buttons.forEach(function (b) { b.addEventListener("click", function () { show(Number(b.dataset.index)); }); });
    show(frames.length - 1);
  });
})();
