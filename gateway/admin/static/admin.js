// sipsgate admin pages: ask before destructive actions in a <dialog>.
// Without this script the server shows a confirmation page instead.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const dialog = document.getElementById("confirm-dialog");
  if (!dialog || typeof dialog.showModal !== "function") {
    return;
  }
  const text = document.getElementById("confirm-text");
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      const flag = form.querySelector("input[name=confirmed]");
      if (flag && flag.value === "1") {
        return;
      }
      event.preventDefault();
      text.textContent = form.dataset.confirm;
      dialog.returnValue = "";
      dialog.addEventListener(
        "close",
        () => {
          if (dialog.returnValue === "ok" && flag) {
            flag.value = "1";
            form.submit();
          }
        },
        { once: true },
      );
      dialog.showModal();
    });
  }
});
