// ArbionTrader page behaviour shared by every page (loaded with `defer`; the CSP forbids inline scripts).
(function () {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  // Session-authenticated unsafe requests carry the CSRF token as a header.
  document.addEventListener("htmx:configRequest", function (event) {
    if (event.detail.verb !== "get") {
      event.detail.headers["X-CSRFToken"] = csrfToken();
    }
  });

  function typingIn(target) {
    var active = document.activeElement;
    return target && active && target.contains(active) && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName);
  }

  function pointingAtControl(target) {
    return target && target.querySelector("button:hover, input:hover, select:hover, a:hover") !== null;
  }

  // Live parts poll only while the page is visible (no polling storms from background tabs) and
  // never while the user is typing in them or about to click one of their buttons (a refresh
  // would wipe what they type, or swap the button away under the click).
  document.addEventListener("htmx:beforeRequest", function (event) {
    var trigger = event.detail.requestConfig && event.detail.requestConfig.triggeringEvent;
    var polling = !trigger || trigger.type !== "submit";
    var target = event.detail.target;
    if (polling && (document.hidden || typingIn(target) || pointingAtControl(target))) {
      event.preventDefault();
    }
  });

  // A failed refresh says so in place instead of failing silently.
  function markFailed(event) {
    var target = event.detail.target;
    if (target) {
      target.setAttribute("data-stale", "true");
      var note = target.querySelector(".live-error");
      if (!note) {
        note = document.createElement("p");
        note.className = "live-error";
        note.setAttribute("role", "status");
        target.prepend(note);
      }
      note.textContent = "Could not refresh; showing the last known data. Retrying…";
    }
  }
  document.addEventListener("htmx:responseError", markFailed);
  document.addEventListener("htmx:sendError", markFailed);
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target) {
      event.detail.target.removeAttribute("data-stale");
    }
  });

  // Forms that ask for confirmation before a consequential action (close, flatten, halt).
  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute && event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) {
      event.preventDefault();
    }
  }, true);
})();
