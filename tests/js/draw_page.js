// Runs the writing page's script (hmer/assets/draw.html) against a minimal fake DOM: writes
// two strokes, lets the debounce fire, and prints what the page sent and what it shows, as JSON.
// Usage: node draw_page.js PAGE.html   (driven by tests/test_serve.py)
"use strict";
const fs = require("fs");
const vm = require("vm");

const html = fs.readFileSync(process.argv[2], "utf8");
const script = html.match(/<script>([\s\S]*)<\/script>/)[1];

function element(id) {
  return {
    id, textContent: "", innerHTML: "", className: "", value: id === "beam" ? "10" : "",
    clientWidth: 600, clientHeight: 300, handlers: {},
    addEventListener(type, handler) { this.handlers[type] = handler; },
    getBoundingClientRect() { return {left: 10, top: 20}; },
    setPointerCapture() {},
    getContext() {
      return new Proxy({}, {get: (target, name) => (name in target ? target[name] : () => {}),
                            set: (target, name, value) => { target[name] = value; return true; }});
    },
  };
}
const elements = {};
const sent = [];
const context = {
  document: {getElementById: (id) => (elements[id] = elements[id] || element(id))},
  window: {devicePixelRatio: 2, addEventListener() {}},
  navigator: {clipboard: {writeText: async () => {}}},
  setTimeout, clearTimeout, console,
  fetch: async (url, options) => {
    sent.push({url, method: options.method, body: JSON.parse(options.body)});
    return {ok: true, json: async () => ({latex: "x + 1", tokens: ["x", "+", "1"], score: -0.25,
                                          svg: "<svg id='math'></svg>"})};
  },
};
vm.createContext(context);
vm.runInContext(script, context);

const pad = elements.pad;
const at = (x, y) => ({clientX: x, clientY: y, pointerId: 1});
pad.handlers.pointerdown(at(30, 40));
pad.handlers.pointermove(at(35, 45));
pad.handlers.pointerup(at(35, 45));
pad.handlers.pointerdown(at(60, 40));
pad.handlers.pointerup(at(60, 40));
setTimeout(() => {
  console.log(JSON.stringify({
    sent,
    latex: elements.latex.textContent,
    rendered: elements.rendered.innerHTML,
    status: elements.status.textContent,
  }));
}, 600);
