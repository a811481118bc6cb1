'use strict';
'require baseclass';
'require dom';
'require uci';
'require ui';
'require rpc';

/*
 * Stand-in for LuCI's form.js: Map, NamedSection, TypedSection, GridSection and the
 * option classes Value, ListValue, Flag, MultiValue, DynamicList, DummyValue. It keeps
 * LuCI's contracts that decide what lands in the config: cfgvalue/formvalue/textvalue,
 * depends, rmempty/optional, Flag's "default means absent", validation before anything
 * is written, and the save path parse -> uci.save -> reload -> re-render. GridSection
 * edits `editable` options in the row and everything else in a modal dialog.
 */

const callSessionAccess = rpc.declare({
	object: 'session',
	method: 'access',
	params: [ 'scope', 'object', 'function' ],
	expect: { 'access': false }
});

function isEqual(a, b) {
	if (Array.isArray(a) || Array.isArray(b))
		return JSON.stringify(L.toArray(a)) == JSON.stringify(L.toArray(b));

	return (a == null ? '' : String(a)) == (b == null ? '' : String(b));
}

const CBIMap = baseclass.extend({
	__init__(config, title, description) {
		this.config = config;
		this.title = title || '';
		this.description = description || '';
		this.children = [];
		this.data = uci;
		this.readonly = null;
	},

	section(cls) {
		const args = Array.prototype.slice.call(arguments, 1);
		const section = new cls(this, ...args);

		this.children.push(section);
		return section;
	},

	/* As LuCI's Map.load: unless set, `readonly` is whether the session may not write the
	 * config (rpcd `session access` for uci/<config>/write). */
	load() {
		const checkAcl = (this.readonly == null);

		return Promise.all([ checkAcl ? callSessionAccess('uci', this.config, 'write') : true, this.data.load(this.config) ])
			.then((res) => {
				if (checkAcl)
					this.readonly = !res[0];

				for (const section of this.children)
					section.load();
			});
	},

	parse() {
		return Promise.all(this.children.map((section) => section.parse()));
	},

	save(cb, silent) {
		this.checkDepends();

		return this.parse()
			.then(cb)
			.then(() => this.data.save())
			.then(() => this.load())
			.catch((err) => {
				if (!silent)
					ui.showModal(_('Save error'), [
						E('p', {}, [ _('An error occurred while saving the form:') ]),
						E('p', {}, [ E('em', { 'class': 'save-error', 'style': 'white-space:pre-wrap' }, [ err.message ]) ]),
						E('div', { 'class': 'right' }, [ E('button', { 'class': 'cbi-button', 'click': () => ui.hideModal() }, [ _('Dismiss') ]) ])
					]);

				return Promise.reject(err);
			})
			.then(() => this.renderContents());
	},

	reset() {
		this.data.unload(this.config);
		return this.load().then(() => this.renderContents());
	},

	render() {
		return this.load().then(() => this.renderContents());
	},

	renderContents() {
		const root = this.root || (this.root = E('div', { 'id': 'cbi-' + this.config, 'class': 'cbi-map' }));

		dom.content(root, [
			this.title ? E('h2', { 'name': 'content' }, [ this.title ]) : '',
			this.description ? E('div', { 'class': 'cbi-map-descr' }, this.description) : ''
		].concat(this.children.map((section) => section.render())));

		dom.bindClassInstance(root, this);

		if (!this.listening) {
			root.addEventListener('widget-change', () => this.checkDepends());
			this.listening = true;
		}

		this.checkDepends();
		return root;
	},

	/* Show the options whose dependencies hold, hide the others (until nothing changes). */
	checkDepends() {
		for (let round = 0; round < 5; round++) {
			let changed = false;

			for (const section of this.children)
				for (const sid of section.cfgsections())
					for (const option of section.children) {
						const row = option.rows[sid];

						if (!row)
							continue;

						const active = option.checkActive(sid);

						if (row.classList.contains('hidden') == active) {
							row.classList.toggle('hidden', !active);
							changed = true;
						}
					}

			if (!changed)
				break;
		}
	}
});

const CBIAbstractSection = baseclass.extend({
	__init__(map, sectiontype, title, description) {
		this.map = map;
		this.sectiontype = sectiontype;
		this.title = title || '';
		this.description = description || '';
		this.children = [];
		this.tabs = [];
		this.addremove = false;
		this.anonymous = false;
	},

	tab(name, title, description) {
		this.tabs.push({ name: name, title: title, description: description });
	},

	option(cls, name, title, description) {
		const option = new cls(this.map, this, name, title, description);

		this.children.push(option);
		return option;
	},

	taboption(tab, cls, name, title, description) {
		const option = this.option(cls, name, title, description);

		option.tab = tab;
		return option;
	},

	cfgsections() {
		return this.map.data.sections(this.map.config, this.sectiontype).map((s) => s['.name']).filter((sid) => this.filter(sid));
	},

	filter(section_id) {
		return true;
	},

	getOption(name) {
		return this.children.filter((o) => o.option == name)[0] || null;
	},

	formvalue(section_id, option) {
		const o = this.getOption(option);
		return o ? o.formvalue(section_id) : null;
	},

	cfgvalue(section_id, option) {
		const o = this.getOption(option);
		return o ? o.cfgvalue(section_id) : null;
	},

	load() {
		for (const sid of this.cfgsections())
			for (const option of this.children)
				option.load(sid);
	},

	parse() {
		const tasks = [];

		for (const sid of this.cfgsections())
			for (const option of this.children)
				if (option.widgets[sid])
					tasks.push(option.parse(sid));

		return Promise.all(tasks);
	},

	renderOptionRow(option, section_id, inModal) {
		const widget = option.renderWidget(section_id);
		const row = E('div', { 'class': 'cbi-value', 'data-name': option.option, 'id': 'cbi-%s-%s-%s'.format(this.map.config, section_id, option.option) }, [
			E('label', { 'class': 'cbi-value-title', 'for': 'widget.' + option.cbid(section_id) }, [ option.title ]),
			E('div', { 'class': 'cbi-value-field' }, [
				widget,
				(option.description && (inModal || !this.nodescriptions)) ? E('div', { 'class': 'cbi-value-description' }, option.description) : ''
			])
		]);

		option.rows[section_id] = row;
		return row;
	},

	handleAdd(ev, name) {
		this.map.data.add(this.map.config, this.sectiontype, name);
		return this.map.save(null, true);
	},

	handleRemove(section_id, ev) {
		this.map.data.remove(this.map.config, section_id);
		return this.map.save(null, true);
	},

	renderSectionAdd() {
		if (!this.addremove || this.map.readonly)
			return '';

		const nameEl = this.anonymous ? null : E('input', { 'type': 'text', 'class': 'cbi-section-create-name' });

		if (nameEl)
			ui.addValidator(nameEl, 'uciname', true, (value) => {
				return (value && this.map.data.get(this.map.config, value) != null) ? _('Expecting: %s').format(_('unique UCI identifier')) : true;
			}, 'blur', 'keyup');

		return E('div', { 'class': 'cbi-section-create' }, [
			nameEl || '',
			E('button', { 'class': 'cbi-button cbi-button-add', 'title': this.addbtntitle || _('Add'),
				'click': ui.createHandlerFn(this, (ev) => this.handleAdd(ev, nameEl ? nameEl.value : null)) },
				[ this.addbtntitle || _('Add') ])
		]);
	}
});

const CBITypedSection = CBIAbstractSection.extend({
	render() {
		const nodes = this.cfgsections().map((sid) => E('div', { 'class': 'cbi-section-node', 'data-section-id': sid }, [
			(!this.anonymous && this.title) ? E('h4', {}, [ sid ]) : ''
		].concat(this.children.filter((o) => !o.gridonly).map((o) => this.renderOptionRow(o, sid)))
			.concat(this.addremove ? [ E('button', { 'class': 'cbi-button cbi-button-remove',
				'click': ui.createHandlerFn(this, 'handleRemove', sid) }, [ _('Delete') ]) ] : [])));

		return E('div', { 'class': 'cbi-section', 'id': 'cbi-%s-%s'.format(this.map.config, this.sectiontype) }, [
			this.title ? E('h3', {}, [ this.title ]) : '',
			this.description ? E('div', { 'class': 'cbi-section-descr' }, this.description) : ''
		].concat(nodes.length ? nodes : [ E('em', {}, [ _('This section contains no values yet') ]) ])
			.concat([ this.renderSectionAdd() ]));
	}
});

const CBINamedSection = CBIAbstractSection.extend({
	__init__(map, section_id, sectiontype, title, description) {
		CBIAbstractSection.prototype.__init__.call(this, map, sectiontype, title, description);
		this.section = section_id;
	},

	cfgsections() {
		return (this.map.data.get(this.map.config, this.section) != null) ? [ this.section ] : [];
	},

	render() {
		const sid = this.section;
		const exists = this.cfgsections().length > 0;

		return E('div', { 'class': 'cbi-section', 'id': 'cbi-%s-%s'.format(this.map.config, sid) }, [
			this.title ? E('h3', {}, [ this.title ]) : '',
			this.description ? E('div', { 'class': 'cbi-section-descr' }, this.description) : '',
			exists ? E('div', { 'class': 'cbi-section-node' }, this.children.map((o) => this.renderOptionRow(o, sid)))
				: E('em', {}, [ _('The section %s does not exist.').format(sid) ])
		]);
	}
});

const CBIGridSection = CBITypedSection.extend({
	gridOptions() {
		return this.children.filter((o) => !o.modalonly);
	},

	renderCell(option, sid) {
		const cell = E('td', { 'class': 'td cbi-value-field', 'data-name': option.option, 'data-title': option.title });

		if (option.editable && !this.map.readonly) {
			dom.append(cell, [ option.renderWidget(sid) ]);
			option.rows[sid] = cell;
		}
		else {
			const text = option.textvalue(sid);
			dom.append(cell, [ (text == null || text === '') ? '-' : String(text) ]);
		}

		return cell;
	},

	render() {
		const columns = this.gridOptions();
		const sids = this.cfgsections();
		const titles = E('tr', { 'class': 'tr cbi-section-table-titles' },
			(this.sortable ? [ E('th', { 'class': 'th cbi-section-table-cell' }) ] : [])
				.concat([ E('th', { 'class': 'th cbi-section-table-cell' }, [ this.anonymous ? '' : _('Name') ]) ])
				.concat(columns.map((o) => E('th', { 'class': 'th cbi-section-table-cell', 'data-name': o.option }, [ o.title ])))
				.concat([ E('th', { 'class': 'th cbi-section-table-cell cbi-section-actions' }) ]));

		const rows = sids.map((sid) => {
			const row = E('tr', { 'class': 'tr cbi-section-table-row', 'data-sid': sid, 'id': 'cbi-%s-%s'.format(this.map.config, sid) },
				(this.sortable ? [ E('td', { 'class': 'td cbi-section-table-cell' }, [ this.renderDragHandle(sid) ]) ] : [])
					.concat([ E('td', { 'class': 'td cbi-section-table-cell', 'data-name': '.name' }, [ this.anonymous ? '' : sid ]) ])
					.concat(columns.map((o) => this.renderCell(o, sid)))
					.concat([ E('td', { 'class': 'td cbi-section-table-cell nowrap cbi-section-actions' }, [
						E('button', { 'class': 'btn cbi-button cbi-button-edit', 'title': _('Edit'),
							'click': ui.createHandlerFn(this, 'renderMoreOptionsModal', sid) }, [ _('Edit') ]), ' ',
						this.addremove && !this.map.readonly ? E('button', { 'class': 'btn cbi-button cbi-button-remove', 'title': _('Delete'),
							'click': ui.createHandlerFn(this, 'handleRemove', sid) }, [ _('Delete') ]) : ''
					]) ]));

			return row;
		});

		return E('div', { 'class': 'cbi-section cbi-tblsection', 'id': 'cbi-%s-%s'.format(this.map.config, this.sectiontype) }, [
			this.title ? E('h3', {}, [ this.title ]) : '',
			this.description ? E('div', { 'class': 'cbi-section-descr' }, this.description) : '',
			E('table', { 'class': 'table cbi-section-table' }, [ titles ].concat(rows.length ? rows : [
				E('tr', { 'class': 'tr placeholder' }, [ E('td', { 'class': 'td' }, [ E('em', {}, [ _('This section contains no values yet') ]) ]) ])
			])),
			this.renderSectionAdd()
		]);
	},

	/* Rows can be dragged by their handle; the new order goes to uci.move(). */
	renderDragHandle(sid) {
		return E('div', {
			'class': 'btn cbi-button drag-handle', 'draggable': 'true', 'title': _('Drag to reorder'),
			'dragstart': (ev) => ev.dataTransfer.setData('text/plain', sid),
			'dragover': (ev) => ev.preventDefault(),
			'drop': (ev) => {
				ev.preventDefault();
				const moved = ev.dataTransfer.getData('text/plain');
				if (moved && moved != sid) {
					this.map.data.move(this.map.config, moved, sid);
					this.map.renderContents();
				}
			}
		}, [ '☰' ]);
	},

	handleAdd(ev, name) {
		const sid = this.map.data.add(this.map.config, this.sectiontype, name);

		return this.map.load().then(() => {
			this.map.renderContents();
			return this.renderMoreOptionsModal(sid, true);
		});
	},

	/* Every option of one section in a dialog; Save writes them to uci and re-renders. */
	renderMoreOptionsModal(section_id, isNew) {
		const options = this.children.filter((o) => !o.gridonly);
		const tabs = this.tabs.length ? this.tabs : [ { name: '', title: '' } ];
		const panes = tabs.map((tab) => E('div', { 'class': 'cbi-tabcontainer', 'data-tab': tab.name, 'data-tab-title': tab.title },
			options.filter((o) => (o.tab || '') == tab.name || !this.tabs.length).map((o) => this.renderOptionRow(o, section_id, true))));
		const menu = (tabs.length > 1) ? E('ul', { 'class': 'cbi-tabmenu' }, tabs.map((tab, i) => E('li', {
			'class': 'tabmenu-item-' + tab.name + (i ? '' : ' cbi-tab'),
			'click': (ev) => {
				panes.forEach((pane, j) => pane.classList.toggle('hidden', j != i));
				Array.prototype.forEach.call(menu.childNodes, (li, j) => li.className = 'tabmenu-item-' + tabs[j].name + (j == i ? ' cbi-tab' : ''));
			}
		}, [ E('a', { 'href': '#', 'click': (ev) => ev.preventDefault() }, [ tab.title ]) ]))) : '';

		panes.forEach((pane, j) => pane.classList.toggle('hidden', j != 0));

		const body = E('div', { 'class': 'cbi-section cbi-modal', 'data-sid': section_id }, [ menu ].concat(panes));
		dom.bindClassInstance(body, this.map);
		body.addEventListener('widget-change', () => this.map.checkDepends());

		const dismiss = () => {
			if (isNew)
				this.map.data.remove(this.map.config, section_id);
			ui.hideModal();
			return this.map.load().then(() => this.map.renderContents());
		};

		const save = () => {
			this.map.checkDepends();
			const tasks = options.map((o) => o.parse(section_id));

			return Promise.all(tasks)
				.then(() => this.map.data.save())
				.then(() => this.map.load())
				/* LuCI re-renders the dialog's own map after saving it (dom.content). */
				.then(() => { dom.content(body, E('em', { 'class': 'spinning' }, [ _('Saving…') ])); })
				.then(() => { ui.hideModal(); this.map.renderContents(); })
				.catch((err) => {
					dom.content(errorBox, [ E('em', { 'class': 'save-error' }, [ err.message ]) ]);
				});
		};

		const errorBox = E('div', { 'class': 'cbi-modal-error' });

		ui.showModal(_('%s: %s').format(this.title || this.sectiontype, section_id), [
			body,
			errorBox,
			E('div', { 'class': 'right' }, [
				E('button', { 'class': 'btn cbi-button', 'click': dismiss }, [ _('Dismiss') ]), ' ',
				E('button', { 'class': 'btn cbi-button cbi-button-positive important', 'click': save,
					'disabled': this.map.readonly ? 'disabled' : null }, [ _('Save') ])
			])
		]);

		this.map.checkDepends();
		return Promise.resolve();
	}
});

const CBITableSection = CBIGridSection.extend({});

const CBIAbstractValue = baseclass.extend({
	__init__(map, section, option, title, description) {
		this.map = map;
		this.section = section;
		this.option = option;
		this.title = title || '';
		this.description = description || '';
		this.deps = [];
		this.keylist = [];
		this.vallist = [];
		this.data = {};
		this.widgets = {};
		this.rows = {};
		this.rmempty = true;
		this.optional = false;
		this.default = null;
		this.datatype = null;
		this.placeholder = null;
	},

	cbid(section_id) {
		return 'cbid.%s.%s.%s'.format(this.map.config, section_id, this.option);
	},

	depends(field, value) {
		this.deps.push((typeof field == 'string') ? { [field]: value } : field);
	},

	value(key, label) {
		this.keylist.push(String(key));
		this.vallist.push(label != null ? label : String(key));
	},

	choices() {
		const out = {};
		this.keylist.forEach((key, i) => { out[key] = this.vallist[i]; });
		return out;
	},

	load(section_id) {
		this.data[section_id] = this.map.data.get(this.map.config, section_id, this.option);
		delete this.widgets[section_id];
		delete this.rows[section_id];
		return this.data[section_id];
	},

	cfgvalue(section_id, value) {
		if (arguments.length > 1)
			this.data[section_id] = value;

		return this.data[section_id];
	},

	/* As LuCI: the widget is found through its node and the DOM registry (dom.content
	 * clears the registry entries of nodes it replaces, and then this throws). */
	getUIElement(section_id) {
		const widget = this.widgets[section_id];
		const node = widget && widget.frameNode;

		const instance = node ? dom.findClassInstance(node) : null;

		return (instance instanceof ui.AbstractElement) ? instance : null;
	},

	formvalue(section_id) {
		const widget = this.getUIElement(section_id);
		return widget ? widget.getValue() : null;
	},

	textvalue(section_id) {
		let value = this.cfgvalue(section_id);

		if (value == null)
			value = this.default;

		if (Array.isArray(value))
			return value.join(', ');

		const i = this.keylist.indexOf(String(value));
		return (i != -1) ? this.vallist[i] : value;
	},

	validate(section_id, value) {
		return true;
	},

	/* Every dependency set is a chance: one set whose fields all match makes it active. */
	checkActive(section_id) {
		if (!this.deps.length)
			return true;

		return this.deps.some((dep) => Object.keys(dep).every((field) => {
			const option = this.section.getOption(field);
			let value = this.section.formvalue(section_id, field);

			if (value == null && option)
				value = (option.cfgvalue(section_id) != null) ? option.cfgvalue(section_id) : option.default;

			if (option && option.rows[section_id] && option.rows[section_id].classList.contains('hidden'))
				return false;

			return String(value) == String(dep[field]);
		}));
	},

	isActive(section_id) {
		return this.checkActive(section_id);
	},

	/* As LuCI: the state the widget's own validation (on input, change, blur) left. */
	isValid(section_id) {
		const widget = this.widgets[section_id];
		return widget ? widget.isValid() : true;
	},

	getValidationError(section_id) {
		const widget = this.widgets[section_id];
		return widget ? widget.getValidationError() : '';
	},

	write(section_id, value) {
		return this.map.data.set(this.map.config, section_id, this.option, value);
	},

	remove(section_id) {
		return this.map.data.unset(this.map.config, section_id, this.option);
	},

	parse(section_id) {
		const active = this.isActive(section_id);

		if (active && !this.isValid(section_id))
			return Promise.reject(new TypeError(_('Option "%s" contains an invalid input value.').format(this.title || this.option)
				+ ' ' + this.getValidationError(section_id)));

		if (active) {
			const cval = this.cfgvalue(section_id);
			const fval = this.formvalue(section_id);
			const empty = fval == null || fval === '' || (Array.isArray(fval) && !fval.length);

			if (empty) {
				if (this.rmempty || this.optional)
					return Promise.resolve(this.remove(section_id));

				return Promise.reject(new TypeError(_('Option "%s" must not be empty.').format(this.title || this.option)));
			}

			if (!isEqual(cval, fval))
				return Promise.resolve(this.write(section_id, fval));
		}
		else if (!this.retain) {
			return Promise.resolve(this.remove(section_id));
		}

		return Promise.resolve();
	},

	widgetOptions(section_id) {
		return {
			id: this.cbid(section_id),
			name: this.cbid(section_id),
			placeholder: this.placeholder,
			datatype: this.datatype,
			optional: this.optional || this.rmempty,
			validate: L.bind(this.validate, this, section_id),
			disabled: this.readonly || this.map.readonly
		};
	},

	renderWidget(section_id) {
		const cfg = this.cfgvalue(section_id);
		const widget = this.createWidget(section_id, (cfg != null) ? cfg : this.default);

		this.widgets[section_id] = widget;
		widget.frameNode = widget.render();
		return widget.frameNode;
	}
});

const CBIValue = CBIAbstractValue.extend({
	createWidget(section_id, value) {
		return new ui.Textfield(value, Object.assign(this.widgetOptions(section_id), { choices: this.keylist.length ? this.choices() : null }));
	}
});

const CBIListValue = CBIAbstractValue.extend({
	createWidget(section_id, value) {
		return new ui.Select(value, this.choices(), Object.assign(this.widgetOptions(section_id), { optional: this.optional }));
	}
});

const CBIFlag = CBIAbstractValue.extend({
	__init__(map, section, option, title, description) {
		CBIAbstractValue.prototype.__init__.call(this, map, section, option, title, description);
		this.enabled = '1';
		this.disabled = '0';
		this.default = this.disabled;
	},

	createWidget(section_id, value) {
		return new ui.Checkbox(value, Object.assign(this.widgetOptions(section_id), {
			value_enabled: this.enabled, value_disabled: this.disabled, optional: true
		}));
	},

	textvalue(section_id) {
		const value = (this.cfgvalue(section_id) != null) ? this.cfgvalue(section_id) : this.default;
		return (value == this.enabled) ? _('Yes') : _('No');
	},

	/* A flag at its default is left out of the config. */
	parse(section_id) {
		if (this.isActive(section_id)) {
			const fval = this.formvalue(section_id);

			if (fval == null)
				return Promise.resolve();

			if (fval == this.default && (this.optional || this.rmempty))
				return Promise.resolve(this.remove(section_id));

			if (!isEqual(this.cfgvalue(section_id), fval))
				return Promise.resolve(this.write(section_id, fval));

			return Promise.resolve();
		}

		return this.retain ? Promise.resolve() : Promise.resolve(this.remove(section_id));
	}
});

const CBIMultiValue = CBIAbstractValue.extend({
	cfgvalue(section_id, value) {
		if (arguments.length > 1)
			this.data[section_id] = value;

		return (this.data[section_id] == null) ? null : L.toArray(this.data[section_id]);
	},

	createWidget(section_id, value) {
		return new ui.Dropdown(L.toArray(value), this.choices(), Object.assign(this.widgetOptions(section_id), { multiple: true }));
	}
});

const CBIDynamicList = CBIMultiValue.extend({
	createWidget(section_id, value) {
		return new ui.DynamicList(L.toArray(value), this.choices(), this.widgetOptions(section_id));
	}
});

const CBIDummyValue = CBIAbstractValue.extend({
	createWidget(section_id, value) {
		return { render: () => E('div', {}, [ value != null ? String(value) : '' ]), getValue: () => null,
			triggerValidation: () => true, getValidationError: () => '' };
	},

	parse() {
		return Promise.resolve();
	}
});

return baseclass.extend({
	Map: CBIMap,
	TypedSection: CBITypedSection,
	NamedSection: CBINamedSection,
	GridSection: CBIGridSection,
	TableSection: CBITableSection,
	Value: CBIValue,
	ListValue: CBIListValue,
	Flag: CBIFlag,
	MultiValue: CBIMultiValue,
	DynamicList: CBIDynamicList,
	DummyValue: CBIDummyValue
});
