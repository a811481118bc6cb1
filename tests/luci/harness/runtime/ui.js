'use strict';
'require baseclass';
'require dom';
'require validation';
'require uci';

/*
 * Stand-in for LuCI's ui.js: the form widgets (text field, select, checkbox, multi
 * select, dynamic list), validators, notifications, modals, handler functions and
 * uci change application. Widgets keep LuCI's interface (render, getValue, setValue,
 * isValid, triggerValidation) and raise `widget-change` like LuCI's.
 */

const UIElement = baseclass.extend({
	__init__(value, options) {
		this.value = value;
		this.options = Object.assign({}, options);
		this.validState = true;
		this.validError = null;
	},

	getValue() {
		return this.node ? this.node.value : this.value;
	},

	setValue(value) {
		if (this.node)
			this.node.value = value;
	},

	isValid() {
		return this.validState !== false;
	},

	getValidationError() {
		return this.validError || '';
	},

	/* Check the current value with the datatype and validate function, mark the field. */
	triggerValidation() {
		const value = this.getValue();
		const empty = value == null || value === '' || (Array.isArray(value) && !value.length);
		const result = (empty && this.options.optional) ? true
			: validation.validate(this.options.datatype, this.options.optional, this.options.validate, value);

		this.validState = (result === true);
		this.validError = (result === true) ? null : result;

		const field = this.validationNode || this.node;

		if (field) {
			field.classList.toggle('cbi-input-invalid', !this.validState);
			if (this.validState)
				field.removeAttribute('data-tooltip');
			else
				field.setAttribute('data-tooltip', this.validError);
			field.setAttribute('title', this.validState ? '' : this.validError);
		}

		return this.validState;
	},

	changed() {
		this.triggerValidation();
		(this.node || this.validationNode).dispatchEvent(new CustomEvent('widget-change', { bubbles: true, detail: { instance: this } }));
	},

	/* node: the input; frame: the element LuCI gives the widget's id and binds to it. */
	bind(node, frame) {
		this.node = node;
		dom.bindClassInstance(frame || node, this);
		node.addEventListener('input', () => this.changed());
		node.addEventListener('change', () => this.changed());
		node.addEventListener('blur', () => this.triggerValidation());
		this.triggerValidation();
		return node;
	},

	widgetId() {
		return this.options.id ? 'widget.' + this.options.id : null;
	}
});

const Textfield = UIElement.extend({
	render() {
		const attrs = {
			'id': this.widgetId(),
			'name': this.options.name,
			'type': this.options.password ? 'password' : 'text',
			'class': 'cbi-input-text',
			'placeholder': this.options.placeholder,
			'value': (this.value != null) ? String(this.value) : '',
			'disabled': this.options.disabled ? 'disabled' : null
		};
		const node = E('input', attrs);
		const wrap = E('div', { 'id': this.options.id, 'class': 'cbi-textfield' }, [ node ]);

		if (this.options.choices && Object.keys(this.options.choices).length) {
			const listId = (this.options.id || 'cbi-list') + '.choices';
			node.setAttribute('list', listId);
			wrap.appendChild(E('datalist', { 'id': listId },
				Object.keys(this.options.choices).map((key) => E('option', { 'value': key }))));
		}

		this.bind(node, wrap);
		return wrap;
	}
});

const Select = UIElement.extend({
	__init__(value, choices, options) {
		UIElement.prototype.__init__.call(this, value, options);
		this.choices = choices || {};
	},

	render() {
		const keys = this.options.sort === false ? Object.keys(this.choices) : Object.keys(this.choices);
		const node = E('select', { 'id': this.widgetId(), 'name': this.options.name, 'class': 'cbi-input-select',
			'disabled': this.options.disabled ? 'disabled' : null },
			(this.options.optional ? [ E('option', { 'value': '' }, [ this.options.placeholder || _('-- Please choose --') ]) ] : [])
				.concat(keys.map((key) => E('option', { 'value': key }, [ this.choices[key] ]))));

		node.value = (this.value != null) ? String(this.value) : (this.options.optional ? '' : keys[0]);
		const frame = E('div', { 'id': this.options.id }, [ node ]);
		this.bind(node, frame);
		return frame;
	}
});

const Checkbox = UIElement.extend({
	render() {
		const node = E('input', { 'id': 'cb%08x'.format(Math.floor(Math.random() * 0xffffffff)), 'name': this.options.name,
			'type': 'checkbox', 'disabled': this.options.disabled ? 'disabled' : null });

		node.checked = (this.value == this.options.value_enabled);
		const frame = E('div', { 'id': this.options.id, 'class': 'cbi-checkbox' }, [ node ]);
		this.bind(node, frame);
		return frame;
	},

	isChecked() {
		return this.node.checked;
	},

	getValue() {
		return this.node.checked ? this.options.value_enabled : this.options.value_disabled;
	}
});

/* A multiple-choice select, drawn as a row of checkboxes. */
const Dropdown = UIElement.extend({
	__init__(value, choices, options) {
		UIElement.prototype.__init__.call(this, value, options);
		this.choices = choices || {};
	},

	render() {
		const selected = L.toArray(this.value);
		const boxes = Object.keys(this.choices).map((key) => E('label', { 'class': 'cbi-dropdown-choice' }, [
			E('input', { 'type': 'checkbox', 'value': key, 'checked': selected.indexOf(key) != -1 ? 'checked' : null,
				'change': () => this.changed() }), ' ', this.choices[key]
		]));

		this.validationNode = E('div', { 'id': this.options.id, 'class': 'cbi-dropdown', 'multiple': '' }, boxes);
		dom.bindClassInstance(this.validationNode, this);
		this.triggerValidation();
		return this.validationNode;
	},

	getValue() {
		if (!this.validationNode)
			return L.toArray(this.value);

		return Array.prototype.filter.call(this.validationNode.querySelectorAll('input'), (box) => box.checked)
			.map((box) => box.value);
	}
});

/* A list of values with a field to add one more; each new value is validated. */
const DynamicList = UIElement.extend({
	__init__(values, choices, options) {
		UIElement.prototype.__init__.call(this, values, options);
		this.items = L.toArray(values).slice();
	},

	render() {
		this.list = E('div', { 'class': 'cbi-dynlist' });
		this.input = E('input', { 'type': 'text', 'class': 'cbi-input-text', 'placeholder': this.options.placeholder || '' });
		this.validationNode = this.input;

		const add = E('button', { 'class': 'cbi-button cbi-button-add', 'click': (ev) => { ev.preventDefault(); this.addItem(); } }, [ '+' ]);

		this.input.addEventListener('keydown', (ev) => {
			if (ev.key == 'Enter') {
				ev.preventDefault();
				this.addItem();
			}
		});
		this.input.addEventListener('input', () => this.triggerNewValidation());

		this.drawItems();
		const frame = E('div', { 'id': this.options.id, 'class': 'cbi-dynlist-frame' }, [ this.list, E('div', { 'class': 'add-item' }, [ this.input, ' ', add ]) ]);
		dom.bindClassInstance(frame, this);
		return frame;
	},

	triggerNewValidation() {
		const value = this.input.value.trim();
		const result = value ? validation.validate(this.options.datatype, true, this.options.validate, value) : true;

		this.input.classList.toggle('cbi-input-invalid', result !== true);
		this.input.setAttribute('title', result === true ? '' : result);
		this.newError = (result === true) ? null : result;
		return result === true;
	},

	addItem() {
		const value = this.input.value.trim();

		if (!value || !this.triggerNewValidation())
			return;

		this.items.push(value);
		this.input.value = '';
		this.drawItems();
		this.list.dispatchEvent(new CustomEvent('widget-change', { bubbles: true, detail: { instance: this } }));
	},

	drawItems() {
		dom.content(this.list, this.items.map((item, i) => E('div', { 'class': 'item' }, [
			E('span', {}, [ item ]), ' ',
			E('a', { 'href': '#', 'class': 'remove', 'title': _('Remove'), 'click': (ev) => {
				ev.preventDefault();
				this.items.splice(i, 1);
				this.drawItems();
				this.list.dispatchEvent(new CustomEvent('widget-change', { bubbles: true, detail: { instance: this } }));
			} }, [ '×' ])
		])));
	},

	getValue() {
		return this.items.slice();
	},

	isValid() {
		return true;
	}
});

let modalOpen = false;

return baseclass.extend({
	AbstractElement: UIElement,
	Textfield: Textfield,
	Select: Select,
	Checkbox: Checkbox,
	Dropdown: Dropdown,
	DynamicList: DynamicList,

	addValidator(field, type, optional, vfunc) {
		const check = () => {
			const result = validation.validate(type, optional, vfunc, field.value);

			field.classList.toggle('cbi-input-invalid', result !== true);
			field.setAttribute('title', result === true ? '' : result);
			return result === true;
		};

		const events = Array.prototype.slice.call(arguments, 4);

		(events.length ? events : [ 'blur', 'keyup' ]).forEach((name) => field.addEventListener(name, check));
		check();
		return check;
	},

	addNotification(title, children, cls) {
		const area = document.getElementById('maincontent');
		const note = E('div', { 'class': 'alert-message fade-in ' + (cls || '') }, [
			title ? E('h4', {}, [ title ]) : '',
			E('div', {}, Array.isArray(children) ? children : [ children ]),
			E('div', { 'class': 'right' }, [
				E('button', { 'class': 'btn', 'click': () => note.remove() }, [ _('Dismiss') ])
			])
		]);

		area.insertBefore(note, area.firstChild);
		return note;
	},

	showModal(title, children) {
		const overlay = document.getElementById('modal_overlay') || document.body.appendChild(
			E('div', { 'id': 'modal_overlay' }, [ E('div', { 'class': 'modal', 'role': 'dialog' }) ]));
		const dialog = overlay.firstChild;

		dom.content(dialog, [ title ? E('h4', {}, [ title ]) : '' ].concat(Array.isArray(children) ? children : [ children ]));
		document.body.classList.add('modal-overlay-active');
		modalOpen = true;
		return dialog;
	},

	hideModal() {
		document.body.classList.remove('modal-overlay-active');
		modalOpen = false;
	},

	isModalOpen() {
		return modalOpen;
	},

	/*
	 * As LuCI: an event handler that calls fn (a method name of ctx, or a function) with
	 * the button disabled and spinning until its promise settles. It does not catch: a
	 * rejection is unhandled and the page shows nothing, so views catch their own errors.
	 */
	createHandlerFn(ctx, fn) {
		const args = Array.prototype.slice.call(arguments, 2);
		const func = (typeof fn == 'string') ? ctx[fn] : fn;

		if (typeof func != 'function')
			return null;

		return function(ev) {
			const button = ev.currentTarget;

			button.classList.add('spinning');
			button.disabled = true;

			Promise.resolve(func.apply(ctx, args.concat([ ev ]))).finally(() => {
				button.classList.remove('spinning');
				button.disabled = false;
			});
		};
	},

	/*
	 * Save & Apply as LuCI's ui.changes: POST admin/uci/apply_rollback with the session id
	 * and the CSRF token; the controller applies with a rollback armed and answers a token;
	 * after apply_holdoff seconds, POST admin/uci/confirm with it until the answer is 204
	 * (or the rollback deadline passes); then the page reloads after apply_display seconds.
	 */
	changes: {
		post(path, fields) {
			const query = Object.keys(fields).map((k) => encodeURIComponent(k) + '=' + encodeURIComponent(fields[k])).join('&');

			return fetch(L.url('admin/uci', path) + '?' + query, { method: 'POST' });
		},

		status(text, cls) {
			let box = document.getElementById('applyreboot-status');

			if (!box)
				box = document.getElementById('maincontent').insertBefore(E('div', { 'id': 'applyreboot-status' }),
					document.getElementById('maincontent').firstChild);

			dom.content(box, E('div', { 'class': 'alert-message ' + cls }, [ E('p', {}, [ text ]) ]));
		},

		apply(checked) {
			checked = (checked !== false);
			this.status(_('Applying configuration changes…'), 'notice spinning');

			return this.post(checked ? 'apply_rollback' : 'apply_unchecked', { sid: L.env.sessionid, token: L.env.token })
				.then((res) => {
					if (res.status !== (checked ? 200 : 204)) {
						this.status(_('Apply request failed with status %h').format(res.status), 'warning');
						return;
					}

					if (!checked)
						return this.applied();

					return res.json().then((reply) => this.confirm(reply.token, Date.now() + L.env.apply_rollback * 1000));
				});
		},

		confirm(token, deadline) {
			const attempt = () => {
				if (Date.now() >= deadline) {
					this.status(_('The configuration was rolled back: the device did not confirm in time.'), 'danger');
					return Promise.resolve();
				}

				return this.post('confirm', { token: token }).then((res) => {
					if (res.status === 204 || res.status === 200)
						return this.applied();

					return new Promise((resolve) => window.setTimeout(resolve, 1000)).then(attempt);
				});
			};

			return new Promise((resolve) => window.setTimeout(resolve, L.env.apply_holdoff * 1000)).then(attempt);
		},

		applied() {
			this.status(_('Configuration changes applied.'), 'notice');
			document.body.setAttribute('data-applied', String(+(document.body.getAttribute('data-applied') || 0) + 1));
			document.dispatchEvent(new CustomEvent('uci-applied'));
			window.setTimeout(() => { window.location = window.location.href.split('#')[0]; }, L.env.apply_display * 1000);
		}
	}
});
