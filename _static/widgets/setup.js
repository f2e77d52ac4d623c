// Prepares a page for the Jupyter widget manager (embed-amd.js, @jupyter-widgets/html-manager 1.0.15),
// served from the book itself. Loaded first by _config.yml (nb_ipywidgets_js), then require.js, then
// embed-amd.js.
(function () {
  // 1. Where its fonts are: next to this file, in _static/widgets. embed-amd.js derives its asset folder
  //    from the URL RequireJS gives each of its AMD modules (base, controls, html-manager...); unmapped,
  //    those URLs are relative to each page, and every page asks its own folder for the fonts (404s).
  //    A global `require` object set before require.js loads is RequireJS's configuration.
  var here = new URL(".", document.currentScript.src).href.replace(/\/$/, "");
  var paths = { "@jupyter-widgets/html-manager/dist": here };
  ["base", "base7", "controls", "controls7", "html-manager"].forEach(function (m) {
    paths["@jupyter-widgets/" + m] = here + "/" + m;  // module URL here/<m>.js: its assets are in here/
  });
  window.require = { paths: paths };
  window.__jupyter_widgets_assets_path__ = here + "/";

  // 2. Math in widget labels: the widgets typeset with MathJax 2's MathJax.Hub.Queue, but the book serves
  //    MathJax 3 (no Hub), which makes every widget throw "Cannot read properties of undefined (reading
  //    'Queue')". Give them a Hub whose Queue typesets the element with MathJax 3. MathJax's deferred script
  //    has run by DOMContentLoaded; the widgets render later, on window load.
  document.addEventListener("DOMContentLoaded", function () {
    var mj = window.MathJax;
    if (!mj || mj.Hub) return;
    mj.Hub = {
      Queue: function (job) {
        var el = job && job[2];
        if (el && mj.startup && mj.startup.promise && mj.typesetPromise) {
          mj.startup.promise.then(function () { return mj.typesetPromise([el]); });
        }
      },
    };
  });
})();
