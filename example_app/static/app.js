// Keeps the "who is online" list current: Socket.IO events when the client
// library is served, otherwise a poll of /api/online every few seconds.
(function () {
  const list = document.getElementById("online");
  if (!list) return;

  function mask(phone) {
    return phone.length > 8 ? phone.slice(0, -6) + "\u2022\u2022\u2022" + phone.slice(-2) : phone;
  }

  function entry(shown) {
    const item = document.createElement("li");
    item.dataset.user = shown;
    item.textContent = shown;
    if (shown === list.dataset.me) {
      const tag = document.createElement("span");
      tag.className = "tag";
      tag.textContent = "you";
      item.append(" ", tag);
    }
    return item;
  }

  function show(user, online) {
    const shown = mask(user);
    const existing = list.querySelector(`li[data-user="${CSS.escape(shown)}"]`);
    if (online && !existing) {
      list.appendChild(entry(shown));
    } else if (!online && existing) {
      existing.remove();
    }
  }

  if (window.io) {
    const socket = window.io();
    socket.on("presence", (change) => show(change.user, change.online));
    return;
  }
  setInterval(async () => {
    const response = await fetch("/api/online");
    const { online } = await response.json();
    for (const item of [...list.children]) {
      if (!online.includes(item.dataset.user)) item.remove();
    }
    for (const person of online) {
      if (!list.querySelector(`li[data-user="${CSS.escape(person)}"]`)) {
        list.appendChild(entry(person));
      }
    }
  }, 3000);
})();
