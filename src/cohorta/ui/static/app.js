// Small behaviours shared by every page.
(function () {
  "use strict";
  // Filters left empty stay out of the request (and of the address bar htmx pushes): "no filter", not "empty".
  document.addEventListener("htmx:configRequest", (event) => {
    const params = event.detail.parameters;
    for (const key of Array.from(params.keys ? params.keys() : Object.keys(params))) {
      const value = params.get ? params.get(key) : params[key];
      if (value === "") {
        if (params.delete) params.delete(key); else delete params[key];
      }
    }
  });
})();
