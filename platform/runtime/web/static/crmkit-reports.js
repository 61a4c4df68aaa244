/* Draws every [data-chart] block with ECharts: the option comes from the server as JSON; clicks open the
   drill-down level or the record list; numbers use zh-CN grouping. Re-runs after htmx swaps. */
(function () {
  "use strict";
  var fmt = new Intl.NumberFormat("zh-CN", { maximumFractionDigits: 2 });
  function number(v) { return (v === null || v === undefined || v === "") ? "—" : fmt.format(v); }

  function draw(el) {
    if (el.getAttribute("data-drawn") || !window.echarts) return;
    var payload = JSON.parse(el.querySelector("script[type='application/json']").textContent);
    var option = payload.option;
    option.tooltip = option.tooltip || {};
    option.tooltip.valueFormatter = number;
    var axes = [].concat(option.yAxis || []);
    axes.forEach(function (a) { a.axisLabel = a.axisLabel || {}; a.axisLabel.formatter = function (v) { return number(v); }; });
    (option.series || []).forEach(function (s) {
      if (s.label && s.label.show && (s.type === "bar" || s.type === "line")) {
        s.label.formatter = function (p) { return number(Array.isArray(p.value) ? p.value[1] : p.value); };
      }
    });
    var chart = window.echarts.init(el, null, { renderer: "canvas", locale: "ZH" });
    chart.setOption(option);
    el.setAttribute("data-drawn", "1");
    chart.on("click", function (p) {
      var urls = payload.urls || [];
      var url = payload.mode === "cell" ? (urls[p.seriesIndex] || [])[p.dataIndex] : urls[p.dataIndex];
      if (url) { window.location.href = url; }
    });
    if (window.ResizeObserver) { new ResizeObserver(function () { chart.resize(); }).observe(el); }
  }

  function drawAll(root) {
    var els = (root || document).querySelectorAll("[data-chart]");
    for (var i = 0; i < els.length; i++) { draw(els[i]); }
  }

  function toggleCustom(form) {
    var selects = form.querySelectorAll("select[data-range='custom']");
    for (var i = 0; i < selects.length; i++) {
      var custom = selects[i].value === "custom";
      var boxes = form.querySelectorAll(".prompt-custom");
      for (var j = 0; j < boxes.length; j++) { boxes[j].style.display = custom ? "" : "none"; }
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawAll(document);
    var forms = document.querySelectorAll("form.report-prompts");
    for (var i = 0; i < forms.length; i++) {
      toggleCustom(forms[i]);
      forms[i].addEventListener("change", function (e) { toggleCustom(e.currentTarget); });
    }
  });
  document.addEventListener("htmx:afterSettle", function (e) { drawAll(e.target); });
})();
