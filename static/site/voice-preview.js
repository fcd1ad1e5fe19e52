// The agent form's preview player (chat/admin_voices.py): a voice select whose options carry
// data-preview gets an <audio> after it, pointed at our own preview route for the chosen voice.
// The sample streams through our server; the page never talks to the vendor.
(function () {
  "use strict";

  function previewUrl(select, option) {
    var template = select.getAttribute("data-preview-url");
    var placeholder = select.getAttribute("data-preview-placeholder");
    return template.replace(placeholder, encodeURIComponent(option.value));
  }

  function setUp(select) {
    var player = document.createElement("audio");
    player.controls = true;
    player.preload = "none";
    player.className = "vc-voice-preview";
    player.hidden = true;
    var note = document.createElement("span");
    note.className = "vc-voice-preview-note";
    select.insertAdjacentElement("afterend", note);
    select.insertAdjacentElement("afterend", player);

    function show(option) {
      var playing = !player.paused;
      if (option && option.hasAttribute("data-preview")) {
        player.src = previewUrl(select, option);
        player.title = "Preview: " + option.textContent;
        player.hidden = false;
        note.textContent = "";
        if (playing) player.play().catch(function () {});
      } else {
        player.pause();
        player.removeAttribute("src");
        player.hidden = true;
        note.textContent = option && option.value ? "No preview for this voice." : "";
      }
    }

    function chosen() {
      var options = select.selectedOptions;
      return options.length ? options[options.length - 1] : null;
    }

    select.addEventListener("change", function () { show(chosen()); });
    // In a multiple select the last option clicked is the one to hear, selected or not.
    select.addEventListener("click", function (event) {
      if (event.target instanceof HTMLOptionElement) show(event.target);
    });
    player.addEventListener("error", function () {
      if (player.getAttribute("src")) note.textContent = "The preview could not be loaded.";
    });
    show(chosen());
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("select[data-preview-url]").forEach(setUp);
  });
})();
