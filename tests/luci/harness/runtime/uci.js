'use strict';
'require baseclass';
'require rpc';

/*
 * Stand-in for LuCI's uci.js: a local copy of each loaded config plus pending changes
 * (creates, option changes, deletes, order); save() sends them to the ubus `uci` object
 * (the harness server stages them, as rpcd does in /tmp/.uci) and apply() commits.
 */

const callGet = rpc.declare({ object: 'uci', method: 'get', params: [ 'config' ], expect: { values: {} } });
const callAdd = rpc.declare({ object: 'uci', method: 'add', params: [ 'config', 'type', 'name', 'values' ], expect: { section: '' } });
const callSet = rpc.declare({ object: 'uci', method: 'set', params: [ 'config', 'section', 'values' ] });
const callDelete = rpc.declare({ object: 'uci', method: 'delete', params: [ 'config', 'section', 'options' ] });
const callOrder = rpc.declare({ object: 'uci', method: 'order', params: [ 'config', 'sections' ] });
const callApply = rpc.declare({ object: 'uci', method: 'apply', params: [ 'rollback', 'timeout' ], reject: true });

let anonymousCounter = 0;

return baseclass.extend({
	__init__() {
		this.state = { values: {}, creates: {}, changes: {}, deletes: {}, reorder: {} };
		this.loaded = {};
	},

	createSID(conf) {
		let sid;

		do {
			sid = 'new' + (++anonymousCounter).toString(16).padStart(6, '0');
		} while (this.get(conf, sid) != null);

		return sid;
	},

	load(packages) {
		const configs = Array.isArray(packages) ? packages : [ packages ];

		return Promise.all(configs.map((conf) => {
			if (this.loaded[conf])
				return conf;

			return callGet(conf).then((values) => {
				this.state.values[conf] = values;
				this.loaded[conf] = true;
				return conf;
			});
		}));
	},

	unload(packages) {
		for (const conf of (Array.isArray(packages) ? packages : [ packages ])) {
			delete this.state.values[conf];
			delete this.state.creates[conf];
			delete this.state.changes[conf];
			delete this.state.deletes[conf];
			delete this.state.reorder[conf];
			delete this.loaded[conf];
		}
	},

	/* All sections of `conf` (optionally of one type) in order, with pending changes. */
	sections(conf, type, cb) {
		const all = [];
		const values = this.state.values[conf] || {};
		const creates = this.state.creates[conf] || {};
		const deletes = this.state.deletes[conf] || {};

		for (const sid in values)
			if (deletes[sid] !== true)
				all.push(this.materialize(conf, sid));

		for (const sid in creates)
			all.push(this.materialize(conf, sid));

		const list = all.filter((s) => s && (!type || s['.type'] == type))
			.sort((a, b) => a['.index'] - b['.index']);

		if (typeof cb == 'function')
			list.forEach((s) => cb.call(this, s, s['.name']));

		return list;
	},

	materialize(conf, sid) {
		const base = (this.state.creates[conf] || {})[sid] || (this.state.values[conf] || {})[sid];

		if (!base)
			return null;

		const out = Object.assign({}, base);
		const changes = (this.state.changes[conf] || {})[sid] || {};
		const deletes = (this.state.deletes[conf] || {})[sid] || {};

		for (const opt in deletes)
			delete out[opt];

		Object.assign(out, changes);

		if ((this.state.reorder[conf] || {})[sid] != null)
			out['.index'] = this.state.reorder[conf][sid];

		return out;
	},

	get(conf, sid, opt) {
		if (sid == null)
			return null;

		const section = this.materialize(conf, sid);

		if (!section || (this.state.deletes[conf] || {})[sid] === true)
			return null;

		if (opt == null)
			return section['.type'];

		return section[opt];
	},

	get_first(conf, type, opt) {
		const first = this.sections(conf, type)[0];

		return first ? (opt == null ? first['.name'] : first[opt]) : null;
	},

	set(conf, sid, opt, value) {
		if (sid == null || opt == null || opt.charAt(0) == '.')
			return;

		if (value == null || value === '' || (Array.isArray(value) && !value.length))
			return this.unset(conf, sid, opt);

		const creates = this.state.creates[conf] || {};

		if (creates[sid]) {
			creates[sid][opt] = value;
			return;
		}

		const changes = this.state.changes[conf] || (this.state.changes[conf] = {});
		const deletes = (this.state.deletes[conf] || {})[sid];

		(changes[sid] || (changes[sid] = {}))[opt] = value;

		if (deletes && deletes !== true)
			delete deletes[opt];
	},

	unset(conf, sid, opt) {
		const creates = this.state.creates[conf] || {};

		if (creates[sid]) {
			delete creates[sid][opt];
			return;
		}

		const changes = (this.state.changes[conf] || {})[sid];

		if (changes)
			delete changes[opt];

		if ((this.state.values[conf] || {})[sid] && opt in this.state.values[conf][sid]) {
			const deletes = this.state.deletes[conf] || (this.state.deletes[conf] = {});
			(deletes[sid] || (deletes[sid] = {}))[opt] = true;
		}
	},

	add(conf, type, name) {
		const creates = this.state.creates[conf] || (this.state.creates[conf] = {});
		const sid = name || this.createSID(conf);
		const count = this.sections(conf).length;

		creates[sid] = { '.name': sid, '.type': type, '.anonymous': !name, '.index': 1000 + count };

		return sid;
	},

	remove(conf, sid) {
		const creates = this.state.creates[conf] || {};

		if (creates[sid]) {
			delete creates[sid];
			return;
		}

		(this.state.deletes[conf] || (this.state.deletes[conf] = {}))[sid] = true;
	},

	/* Move section `sid1` before `sid2` (after it when `after`), as LuCI's uci.move. */
	move(conf, sid1, sid2, after) {
		const list = this.sections(conf);
		const from = list.findIndex((s) => s['.name'] == sid1);

		if (from < 0)
			return false;

		const [ moved ] = list.splice(from, 1);
		let to = (sid2 == null) ? list.length : list.findIndex((s) => s['.name'] == sid2);

		if (to < 0)
			return false;

		if (after)
			to++;

		list.splice(to, 0, moved);

		const order = this.state.reorder[conf] || (this.state.reorder[conf] = {});
		list.forEach((s, i) => { order[s['.name']] = i; });

		return true;
	},

	/* Send the pending changes to the server's staging area, then reload the configs. */
	save() {
		const tasks = [];
		const configs = {};

		for (const conf in this.state.creates)
			for (const sid in this.state.creates[conf]) {
				const section = this.state.creates[conf][sid];
				const values = {};

				for (const key in section)
					if (key.charAt(0) != '.')
						values[key] = section[key];

				tasks.push(() => callAdd(conf, section['.type'], section['.anonymous'] ? null : sid, values));
				configs[conf] = true;
			}

		for (const conf in this.state.changes)
			for (const sid in this.state.changes[conf]) {
				tasks.push(() => callSet(conf, sid, this.state.changes[conf][sid]));
				configs[conf] = true;
			}

		for (const conf in this.state.deletes)
			for (const sid in this.state.deletes[conf]) {
				const del = this.state.deletes[conf][sid];
				tasks.push(() => callDelete(conf, sid, (del === true) ? null : Object.keys(del)));
				configs[conf] = true;
			}

		for (const conf in this.state.reorder) {
			const order = this.state.reorder[conf];
			tasks.push(() => callOrder(conf, Object.keys(order).sort((a, b) => order[a] - order[b])));
			configs[conf] = true;
		}

		return tasks.reduce((p, task) => p.then(task), Promise.resolve()).then(() => {
			const names = Object.keys(configs);

			this.unload(names);
			return this.load(names);
		});
	},

	apply(timeout) {
		return callApply(false, timeout || 10);
	}
});
