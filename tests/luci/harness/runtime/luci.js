'use strict';

/*
 * A minimal stand-in for LuCI's luci.js, enough to run luci-app-netpath's views in a
 * browser without a router: the class system, the module loader that understands the
 * 'require x [as y]' pragmas, E()/_()/N_(), String.prototype.format, and the built-in
 * modules baseclass, dom, poll and view. rpc, uci, ui, form and validation are separate
 * files next to this one, as in LuCI. Behaviour follows LuCI where the views rely on it;
 * anything the views do not use is left out on purpose.
 */
(function(window, document) {
	/* -- class system -------------------------------------------------------------------- */

	function Class() {}

	Class.extend = function(properties) {
		const Parent = this;
		const Child = function() {
			if (typeof this.__init__ == 'function') {
				const result = this.__init__.apply(this, arguments);
				if (result && typeof result.then == 'function')
					this.__ready__ = result;
			}
		};

		Child.prototype = Object.create(Parent.prototype);
		Object.defineProperty(Child.prototype, 'constructor', { value: Child, writable: true });

		for (const key of Object.keys(properties || {})) {
			const desc = Object.getOwnPropertyDescriptor(properties, key);
			Object.defineProperty(Child.prototype, key, desc);
		}

		Child.extend = Class.extend;
		Child.instantiate = function(args) {
			const instance = Object.create(Child.prototype);
			const result = Child.apply(instance, args || []);
			return (result && typeof result == 'object') ? result : instance;
		};
		Child.isSubclass = (other) => other != null && other.prototype instanceof Child;
		Child.__isClass__ = true;

		return Child;
	};

	Class.prototype.super = function(key, args) {
		let proto = Object.getPrototypeOf(Object.getPrototypeOf(this));

		while (proto && !Object.prototype.hasOwnProperty.call(proto, key))
			proto = Object.getPrototypeOf(proto);

		if (!proto)
			throw new ReferenceError('super: no method ' + key);

		return proto[key].apply(this, args || []);
	};

	Class.prototype.varargs = function(args, offset) {
		return Array.prototype.slice.call(args, offset || 0);
	};

	/* -- strings -------------------------------------------------------------------------- */

	const HTML_ESCAPES = { '&': '&#38;', '<': '&#60;', '>': '&#62;', '"': '&#34;', '\'': '&#39;' };

	String.prototype.format = function() {
		const args = arguments;
		let i = 0;

		return this.replace(/%(?:(\d+)?(?:\.(\d+))?)([sdfhqxX%])/g, (match, width, precision, type) => {
			if (type == '%')
				return '%';

			const arg = args[i++];

			switch (type) {
			case 's': return (arg == null) ? '' : String(arg);
			case 'd': return String(Math.trunc(+arg || 0));
			case 'f': return (precision != null) ? (+arg).toFixed(+precision) : String(+arg);
			case 'h': return String(arg == null ? '' : arg).replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]);
			case 'q': return String(arg == null ? '' : arg).replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]);
			case 'x': return (+arg).toString(16);
			case 'X': return (+arg).toString(16).toUpperCase();
			}

			return match;
		});
	};

	/* -- dom -------------------------------------------------------------------------------- */

	const registry = {};
	let idCounter = 0;

	const DOM = Class.extend({
		elem(node) {
			return node != null && typeof node == 'object' && 'nodeType' in node;
		},

		parse(html) {
			const box = document.createElement('div');
			box.innerHTML = html;
			return box.firstChild;
		},

		/* Like LuCI: array items become text nodes, a bare string child becomes HTML. */
		append(node, children) {
			if (!this.elem(node))
				return null;

			if (Array.isArray(children)) {
				for (const child of children) {
					if (this.elem(child))
						node.appendChild(child);
					else if (Array.isArray(child))
						this.append(node, child);
					else if (child != null && child !== '')
						node.appendChild(document.createTextNode(String(child)));
				}
				return node.lastChild;
			}

			if (typeof children == 'function')
				return this.append(node, children(node));

			if (this.elem(children))
				return node.appendChild(children);

			if (children != null) {
				node.innerHTML = String(children);
				return node.lastChild;
			}

			return null;
		},

		content(node, children) {
			if (!this.elem(node))
				return null;

			node.querySelectorAll('[data-idref]').forEach((n) => { delete registry[n.getAttribute('data-idref')]; });

			while (node.firstChild)
				node.removeChild(node.firstChild);

			return this.append(node, children);
		},

		attr(node, key, value) {
			if (!this.elem(node))
				return;

			const attrs = (typeof key == 'object' && key != null) ? key : { [key]: value };

			for (const name in attrs) {
				const val = attrs[name];

				if (val == null)
					continue;

				if (typeof val == 'function')
					node.addEventListener(name, val);
				else if (typeof val == 'object')
					node.setAttribute(name, JSON.stringify(val));
				else
					node.setAttribute(name, val);
			}
		},

		create(tag, attrs, children) {
			if (Array.isArray(attrs) || typeof attrs == 'string' || this.elem(attrs)) {
				children = attrs;
				attrs = null;
			}

			const node = (this.elem(tag)) ? tag
				: (tag.charAt(0) == '<') ? this.parse(tag)
				: document.createElement(tag);

			this.attr(node, attrs);
			this.append(node, children);

			return node;
		},

		/*
		 * As LuCI: a node is bound to its class instance through a `data-idref` attribute
		 * and a registry; content() drops the registry entries of the nodes it replaces
		 * before it removes them, so code that runs while they go (a blur validator) finds
		 * the attribute but no entry, and data() throws like LuCI's dom.data().
		 */
		data(node, key) {
			const id = node.getAttribute && node.getAttribute('data-idref');

			if (id == null)
				return null;

			return registry[id][key];
		},

		bindClassInstance(node, instance) {
			let id = node.getAttribute('data-idref');

			if (id == null) {
				id = String(++idCounter);
				node.setAttribute('data-idref', id);
			}

			registry[id] = { _class: instance };
		},

		findClassInstance(node) {
			let instance = null;

			do {
				instance = this.data(node, '_class');
				node = node.parentNode;
			} while (!(instance instanceof Class) && node != null && node.getAttribute);

			return instance;
		},

		callClassMethod(node, method) {
			const instance = this.findClassInstance(node);

			if (!instance || typeof instance[method] != 'function')
				return null;

			return instance[method].apply(instance, Array.prototype.slice.call(arguments, 2));
		},

		isEmpty(node) {
			return !node || !node.childNodes.length;
		}
	});

	const dom = new DOM();

	/* -- poll ------------------------------------------------------------------------------- */

	const Poll = Class.extend({
		__init__() {
			this.queue = [];
			this.timer = null;
		},

		add(fn, interval) {
			if (this.queue.some((e) => e.fn === fn))
				return false;

			this.queue.push({ fn: fn, interval: interval || L.env.pollinterval || 5, next: 0, running: false });
			this.start();
			return true;
		},

		remove(fn) {
			this.queue = this.queue.filter((e) => e.fn !== fn);
			return true;
		},

		start() {
			if (this.timer == null)
				this.timer = window.setInterval(() => this.step(), 250);
			return true;
		},

		stop() {
			if (this.timer != null)
				window.clearInterval(this.timer);
			this.timer = null;
			return true;
		},

		active() {
			return this.timer != null;
		},

		step() {
			const now = Date.now() / 1000;

			for (const entry of this.queue) {
				if (entry.running)
					continue;
				if (!entry.next) {
					entry.next = now + entry.interval;  /* the view rendered from load() */
					continue;
				}
				if (now < entry.next)
					continue;

				entry.running = true;
				Promise.resolve().then(() => entry.fn()).catch(L.error.bind(L)).finally(() => {
					entry.running = false;
					entry.next = Date.now() / 1000 + entry.interval;
					document.body.setAttribute('data-poll-count', String(+(document.body.getAttribute('data-poll-count') || 0) + 1));
				});
			}
		}
	});

	/* -- view ------------------------------------------------------------------------------- */

	const View = Class.extend({
		__init__() {
			const vp = document.getElementById('view');

			dom.content(vp, E('div', { 'class': 'spinning' }, [ _('Loading view…') ]));

			return Promise.resolve(this.load())
				.then((data) => this.render(data))
				.then((nodes) => {
					dom.content(vp, nodes);
					dom.append(vp, this.addFooter());
					document.body.setAttribute('data-view-ready', '1');
				})
				.catch((err) => L.error(err));
		},

		load() {
			return null;
		},

		render() {
			return null;
		},

		handleSave(ev) {
			const tasks = [];

			document.getElementById('maincontent').querySelectorAll('.cbi-map').forEach((map) => {
				tasks.push(dom.callClassMethod(map, 'save'));
			});

			return Promise.all(tasks);
		},

		handleSaveApply(ev) {
			return this.handleSave(ev).then(() => L.require('ui')).then((ui) => ui.changes.apply());
		},

		handleReset(ev) {
			const tasks = [];

			document.getElementById('maincontent').querySelectorAll('.cbi-map').forEach((map) => {
				tasks.push(dom.callClassMethod(map, 'reset'));
			});

			return Promise.all(tasks);
		},

		addFooter() {
			const footer = E('div', { 'class': 'cbi-page-actions' });
			const maps = Array.prototype.map.call(document.querySelectorAll('#view .cbi-map'), (node) => dom.findClassInstance(node));
			const readonly = maps.length ? maps.every((map) => map && map.readonly) : !L.hasViewPermission();
			const button = (cls, label, handler) => E('button', {
				'class': 'btn cbi-button ' + cls,
				'disabled': readonly ? 'disabled' : null,
				'click': (ev) => {
					ev.target.disabled = true;
					return Promise.resolve(handler.call(this, ev)).finally(() => { ev.target.disabled = readonly; });
				}
			}, [ label ]);

			if (this.handleSaveApply)
				footer.appendChild(button('cbi-button-apply', _('Save & Apply'), this.handleSaveApply));
			if (this.handleSave)
				footer.appendChild(button('cbi-button-save', _('Save'), this.handleSave));
			if (this.handleReset)
				footer.appendChild(button('cbi-button-reset', _('Reset'), this.handleReset));

			return footer.childNodes.length ? footer : E('div');
		}
	});

	/* -- L ---------------------------------------------------------------------------------- */

	const PRAGMA_RE = /^\s*'(use strict|require\s+([A-Za-z0-9_.]+)(?:\s+as\s+([A-Za-z0-9_]+))?)';?/;

	const LuCI = Class.extend({
		__init__(env) {
			this.env = env;
			this.Class = Class;
			this.dom = dom;
			this.modules = {
				baseclass: Promise.resolve(Class),
				dom: Promise.resolve(dom),
				poll: Promise.resolve(new Poll()),
				view: Promise.resolve(View)
			};
		},

		/* Fetch a module, resolve its pragmas, run it with its dependencies as arguments. */
		require(name) {
			if (!this.modules[name])
				this.modules[name] = this.compile(name);

			return this.modules[name];
		},

		compile(name) {
			const url = this.env.resource + '/' + name.replace(/\./g, '/') + '.js';

			return fetch(url, { cache: 'no-store' }).then((res) => {
				if (!res.ok)
					throw new Error('cannot load module ' + name + ' (' + url + '): HTTP ' + res.status);
				return res.text();
			}).then((source) => {
				const deps = [];
				let rest = source;

				for (let m = PRAGMA_RE.exec(rest); m; m = PRAGMA_RE.exec(rest)) {
					if (m[2])
						deps.push({ name: m[2], as: m[3] || m[2].replace(/\./g, '_') });
					rest = rest.substring(m[0].length);
				}

				return Promise.all(deps.map((d) => this.require(d.name))).then((values) => {
					const factory = new Function(...deps.map((d) => d.as), source + '\n//# sourceURL=' + url);
					let output = factory.apply(this, values);

					if (typeof output == 'function' && output.__isClass__) {
						const instance = new output();
						output = instance.__ready__ ? instance.__ready__.then(() => instance) : instance;
					}

					return output;
				});
			});
		},

		resource() {
			return [ this.env.resource ].concat(Array.prototype.slice.call(arguments)).join('/');
		},

		bind(fn, self) {
			const args = Array.prototype.slice.call(arguments, 2);
			return function() { return fn.apply(self, args.concat(Array.prototype.slice.call(arguments))); };
		},

		resolveDefault(value, fallback) {
			return Promise.resolve(value).catch(() => fallback);
		},

		isObject(value) {
			return value != null && typeof value == 'object' && !Array.isArray(value);
		},

		toArray(value) {
			if (value == null)
				return [];
			if (Array.isArray(value))
				return value;
			return String(value).trim().split(/\s+/).filter((v) => v);
		},

		sortedKeys(obj) {
			return Object.keys(obj || {}).sort();
		},

		/* As LuCI: null without a (satisfied) menu node, else whether it is writable. */
		hasViewPermission() {
			if (!this.isObject(this.env.nodespec) || !this.env.nodespec.satisfied)
				return null;

			return !this.env.nodespec.readonly;
		},

		url() {
			return [ this.env.scriptname ].concat(Array.prototype.slice.call(arguments)).join('/');
		},

		raise(type, fmt) {
			const err = new Error(String(fmt).format.apply(String(fmt), Array.prototype.slice.call(arguments, 2)));
			err.name = type;
			throw err;
		},

		error(err) {
			const message = (err && err.stack) ? err.stack : String(err);

			window.__harness_errors.push(message);
			dom.append(document.getElementById('view'), E('div', { 'class': 'alert-message error', 'data-luci-error': '1' }, [
				E('pre', {}, [ message ])
			]));
		}
	});

	window.__harness_errors = [];
	window.addEventListener('error', (ev) => window.__harness_errors.push(String(ev.message)));
	window.addEventListener('unhandledrejection', (ev) => window.__harness_errors.push(String(ev.reason && ev.reason.stack || ev.reason)));

	window.E = function() { return dom.create.apply(dom, arguments); };
	window._ = function(text) { return text; };
	window.N_ = function(count, singular, plural) { return (count == 1) ? singular : plural; };
	window.LuCI = LuCI;
	window.boot = function(env) {
		window.L = new LuCI(env);
		return window.L;
	};
})(window, document);
