'use strict';
'require view';
'require dom';
'require poll';
'require rpc';
'require ui';

/*
 * NetPath overview: live state of each uplink (state, latency, loss, traffic,
 * connections) with small charts of latency and throughput, the policies' current
 * spread and the latest state changes. Everything comes from the agent through the
 * rpcd plugin luci.netpath; the page polls it and keeps the chart history itself.
 */

const callStatus = rpc.declare({
	object: 'luci.netpath',
	method: 'status',
	expect: { '': {} }
});

const callHistory = rpc.declare({
	object: 'luci.netpath',
	method: 'history',
	params: [ 'limit' ],
	expect: { '': {} }
});

const callEnable = rpc.declare({
	object: 'luci.netpath',
	method: 'enable',
	params: [ 'interface' ],
	expect: { '': {} }
});

const callDisable = rpc.declare({
	object: 'luci.netpath',
	method: 'disable',
	params: [ 'interface' ],
	expect: { '': {} }
});

/* LuCI's pattern: read-only sessions (an ACL group without write) only watch. */
const isReadonlyView = !L.hasViewPermission() || null;

const SAMPLES = 60;           /* points per chart: five minutes at LuCI's 5 s poll */
const HISTORY_ROWS = 10;
const CHART_WIDTH = 240;
const CHART_HEIGHT = 60;
const SVG_NS = 'http://www.w3.org/2000/svg';

const STATE_LABELS = {
	online: [ _('Online'), 'success' ],
	offline: [ _('Offline'), 'danger' ],
	connecting: [ _('Connecting'), 'warning' ],
	disconnecting: [ _('Disconnecting'), 'warning' ],
	disabled: [ _('Disabled'), 'notice' ]
};

document.querySelector('head').appendChild(E('link', {
	'rel': 'stylesheet',
	'type': 'text/css',
	'href': L.resource('view/netpath/netpath.css')
}));

function svg(tag, attrs, children) {
	const node = document.createElementNS(SVG_NS, tag);

	for (const key in attrs)
		node.setAttribute(key, attrs[key]);

	for (const child of (children || []))
		node.appendChild(typeof(child) == 'string' ? document.createTextNode(child) : child);

	return node;
}

function formatBytes(count) {
	const units = [ 'B', 'KiB', 'MiB', 'GiB', 'TiB' ];
	let i = 0;

	if (count == null)
		return '–';

	while (count >= 1024 && i < units.length - 1) {
		count /= 1024;
		i++;
	}

	return (i ? count.toFixed(1) : String(count)) + ' ' + units[i];
}

function formatRate(bitsPerSecond) {
	const units = [ 'bit/s', 'kbit/s', 'Mbit/s', 'Gbit/s' ];
	let i = 0;

	if (bitsPerSecond == null)
		return '–';

	while (bitsPerSecond >= 1000 && i < units.length - 1) {
		bitsPerSecond /= 1000;
		i++;
	}

	return bitsPerSecond.toFixed(i ? 1 : 0) + ' ' + units[i];
}

function formatMs(value) {
	return (value == null) ? '–' : value.toFixed(1) + ' ms';
}

function formatPercent(value) {
	return (value == null) ? '–' : value.toFixed(value < 10 ? 1 : 0) + ' %';
}

function formatDuration(seconds) {
	if (seconds == null || seconds < 0)
		return '–';

	seconds = Math.floor(seconds);

	const d = Math.floor(seconds / 86400), h = Math.floor(seconds / 3600) % 24,
	      m = Math.floor(seconds / 60) % 60, s = seconds % 60;

	if (d)
		return `${d}d ${h}h`;
	if (h)
		return `${h}h ${m}m`;
	if (m)
		return `${m}m ${s}s`;

	return `${s}s`;
}

function formatClock(time) {
	const date = new Date(time * 1000);
	const pad = (n) => String(n).padStart(2, '0');

	return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

/* A line chart of one or more series over the same time axis, as inline SVG. */
function renderChart(title, series, format) {
	const values = [];

	for (const s of series)
		for (const v of s.values)
			if (v != null)
				values.push(v);

	const top = values.length ? Math.max.apply(null, values) * 1.15 || 1 : 1;
	const step = CHART_WIDTH / (SAMPLES - 1);
	const lines = [];

	for (const s of series) {
		const offset = SAMPLES - s.values.length;
		let path = '';
		let pen = 'M';

		s.values.forEach((v, i) => {
			if (v == null) {
				pen = 'M';
				return;
			}

			const x = (offset + i) * step;
			const y = CHART_HEIGHT - (v / top) * (CHART_HEIGHT - 4);

			path += `${pen}${x.toFixed(1)},${y.toFixed(1)} `;
			pen = 'L';
		});

		if (path)
			lines.push(svg('path', { 'class': 'netpath-line netpath-line-' + s.key, 'd': path.trim() }));
	}

	const last = series.map((s) => {
		const v = s.values.length ? s.values[s.values.length - 1] : null;
		return E('span', { 'class': 'netpath-legend netpath-legend-' + s.key }, [ `${s.label} ${format(v)}` ]);
	});

	return E('div', { 'class': 'netpath-chart', 'data-chart': title }, [
		E('div', { 'class': 'netpath-chart-title' }, [ title, ' ' ].concat(last)),
		svg('svg', {
			'class': 'netpath-chart-svg',
			'viewBox': `0 0 ${CHART_WIDTH} ${CHART_HEIGHT}`,
			'width': CHART_WIDTH,
			'height': CHART_HEIGHT,
			'role': 'img',
			'aria-label': title
		}, [
			svg('line', { 'class': 'netpath-axis', 'x1': 0, 'y1': CHART_HEIGHT - 0.5, 'x2': CHART_WIDTH, 'y2': CHART_HEIGHT - 0.5 }),
			svg('text', { 'class': 'netpath-scale', 'x': 2, 'y': 10 }, [ format(values.length ? top : null) ])
		].concat(lines))
	]);
}

return view.extend({
	samples: {},

	/* One status call carries the uplinks and the policies; the history is separate. */
	fetch() {
		return Promise.all([
			L.resolveDefault(callStatus(), {}),
			L.resolveDefault(callHistory(HISTORY_ROWS), {})
		]);
	},

	load() {
		return this.fetch();
	},

	/* Remember this poll's counters and latency, to chart them and derive rates. */
	addSample(iface, now) {
		const list = this.samples[iface.name] || (this.samples[iface.name] = []);
		const prev = list.length ? list[list.length - 1] : null;

		// a reply from the agent's status snapshot carries the time it was taken: the same
		// snapshot polled twice is one sample, and rates divide by the agent's clock
		if (prev && prev.time === now)
			return list;

		const sample = {
			time: now,
			latency: iface.latency ? iface.latency.avg : null,
			rx_bytes: iface.rx_bytes,
			tx_bytes: iface.tx_bytes,
			rx_rate: null,
			tx_rate: null
		};

		if (prev && now > prev.time && iface.rx_bytes >= prev.rx_bytes && iface.tx_bytes >= prev.tx_bytes) {
			sample.rx_rate = (iface.rx_bytes - prev.rx_bytes) * 8 / (now - prev.time);
			sample.tx_rate = (iface.tx_bytes - prev.tx_bytes) * 8 / (now - prev.time);
		}

		list.push(sample);

		if (list.length > SAMPLES)
			list.splice(0, list.length - SAMPLES);

		return list;
	},

	handleToggle(iface, ev) {
		const call = (iface.admin == 'disabled') ? callEnable : callDisable;

		return call(iface.name).then((reply) => {
			if (!reply.ok)
				ui.addNotification(null, E('p', [ reply.error || _('The agent did not answer.') ]), 'danger');

			return this.refresh();
		}).catch((err) => ui.addNotification(null, E('p', [ err.message ]), 'danger'));
	},

	renderUplink(iface, samples) {
		const state = STATE_LABELS[iface.state] || [ iface.state, 'notice' ];
		const latency = iface.latency || {};
		const toggle = (iface.admin == 'disabled') ? _('Enable') : _('Disable');

		return E('div', { 'class': 'netpath-uplink', 'data-interface': iface.name, 'data-state': iface.state }, [
			E('div', { 'class': 'netpath-uplink-head' }, [
				E('strong', {}, [ iface.name ]),
				E('span', { 'class': 'netpath-device' }, [ iface.device || '?' ]),
				E('span', { 'class': 'label netpath-state netpath-state-' + state[1] }, [ state[0] ]),
				E('span', { 'class': 'netpath-since' }, [
					iface.since ? _('for %s').format(formatDuration(Date.now() / 1000 - iface.since)) : ''
				]),
				isReadonlyView ? '' : E('button', {
					'class': 'btn cbi-button cbi-button-' + (iface.admin == 'disabled' ? 'apply' : 'reset'),
					'title': (iface.admin == 'disabled')
						? _('Give this uplink back to the policies')
						: _('Move new connections away from this uplink until enabled again'),
					'click': ui.createHandlerFn(this, 'handleToggle', iface)
				}, [ toggle ])
			]),
			E('div', { 'class': 'netpath-uplink-facts' }, [
				E('span', {}, [ E('em', {}, [ _('Latency') ]), ' ', formatMs(latency.avg) ]),
				E('span', {}, [ E('em', {}, [ _('Jitter') ]), ' ', formatMs(latency.jitter) ]),
				E('span', {}, [ E('em', {}, [ _('Loss') ]), ' ', formatPercent(iface.loss_pct) ]),
				E('span', {}, [ E('em', {}, [ _('Received') ]), ' ', formatBytes(iface.rx_bytes) ]),
				E('span', {}, [ E('em', {}, [ _('Sent') ]), ' ', formatBytes(iface.tx_bytes) ]),
				E('span', {}, [ E('em', {}, [ _('Connections') ]), ' ', String(iface.connections != null ? iface.connections : '–') ]),
				E('span', { 'class': 'netpath-reason' }, [ iface.reason || '' ])
			]),
			E('div', { 'class': 'netpath-charts' }, [
				renderChart(_('Latency'), [
					{ key: 'latency', label: _('avg'), values: samples.map((s) => s.latency) }
				], formatMs),
				renderChart(_('Throughput'), [
					{ key: 'rx', label: _('in'), values: samples.map((s) => s.rx_rate) },
					{ key: 'tx', label: _('out'), values: samples.map((s) => s.tx_rate) }
				], formatRate)
			])
		]);
	},

	renderPolicies(policies) {
		if (!policies || !policies.length)
			return E('em', {}, [ _('No policies.') ]);

		const rows = policies.map((p) => {
			const spread = [];

			for (const family of [ 'ipv4', 'ipv6' ]) {
				const shares = (p.spread || {})[family] || {};
				const parts = Object.keys(shares).map((name) => `${name} ${shares[name].toFixed(0)}%`);

				if ((p.last_resort_active || {})[family])
					parts.push(_('last resort: %s').format(p.last_resort));

				if (parts.length)
					spread.push(E('div', {}, [ E('em', {}, [ family == 'ipv4' ? 'IPv4' : 'IPv6' ]), ' ', parts.join(', ') ]));
			}

			return E('tr', { 'class': 'tr' }, [
				E('td', { 'class': 'td' }, [ p.name ]),
				E('td', { 'class': 'td' }, [ p.mode ]),
				E('td', { 'class': 'td' }, spread.length ? spread : [ '–' ])
			]);
		});

		return E('table', { 'class': 'table' }, [
			E('tr', { 'class': 'tr table-titles' }, [
				E('th', { 'class': 'th' }, [ _('Policy') ]),
				E('th', { 'class': 'th' }, [ _('Mode') ]),
				E('th', { 'class': 'th' }, [ _('Traffic share now') ])
			])
		].concat(rows));
	},

	renderHistory(history) {
		if (!history || !history.length)
			return E('em', {}, [ _('No state changes yet.') ]);

		return E('table', { 'class': 'table' }, [
			E('tr', { 'class': 'tr table-titles' }, [
				E('th', { 'class': 'th' }, [ _('Time') ]),
				E('th', { 'class': 'th' }, [ _('Interface') ]),
				E('th', { 'class': 'th' }, [ _('Change') ]),
				E('th', { 'class': 'th' }, [ _('Reason') ])
			])
		].concat(history.slice(-HISTORY_ROWS).reverse().map((h) => E('tr', { 'class': 'tr' }, [
			E('td', { 'class': 'td' }, [ formatClock(h.time) ]),
			E('td', { 'class': 'td' }, [ h.interface ]),
			E('td', { 'class': 'td' }, [ `${h.from} → ${h.to}` ]),
			E('td', { 'class': 'td' }, [ h.reason || '' ])
		]))));
	},

	update(status, history) {
		const now = Date.now() / 1000;
		const { banner, uplinks, policies, events } = this.nodes;

		if (!status.ok) {
			const message = status.error || _('The NetPath agent did not answer.');

			dom.content(banner, E('div', { 'class': 'alert-message warning' }, [
				E('strong', {}, [ _('NetPath is not running.') ]), ' ', message
			]));
			dom.content(uplinks, E('em', {}, [ _('No live data.') ]));
			dom.content(policies, E('em', {}, [ _('No live data.') ]));
			dom.content(events, E('em', {}, [ _('No live data.') ]));
			return;
		}

		dom.content(banner, E('div', { 'class': 'netpath-bundle' }, [
			_('Agent %s, up %s, bundle %s').format(status.version, formatDuration(status.uptime),
				(status.bundle && status.bundle.digest || '').substring(0, 12))
		]));

		if (status.enabled === false) {
			// disabled in the config: nothing is tracked, no interface has a state of its own
			dom.append(banner, E('div', { 'class': 'alert-message notice' }, [
				status.message || _('NetPath is disabled (globals enabled 0)')
			]));
		}

		dom.content(uplinks, status.interfaces.length
			? status.interfaces.map((iface) => this.renderUplink(iface, this.addSample(iface, status.snapshot || now)))
			: E('em', {}, [ status.enabled === false ? _('No interface is tracked while NetPath is disabled.')
				: _('No interfaces are configured.') ]));

		dom.content(policies, this.renderPolicies(status.policies));
		dom.content(events, this.renderHistory(history.ok ? history.history : []));
	},

	refresh() {
		return this.fetch().then((data) => this.update(data[0], data[1]));
	},

	render(data) {
		this.nodes = {
			banner: E('div', { 'id': 'netpath-banner' }),
			uplinks: E('div', { 'id': 'netpath-uplinks', 'class': 'netpath-uplinks' }),
			policies: E('div', { 'id': 'netpath-policies' }),
			events: E('div', { 'id': 'netpath-history' })
		};

		this.update(data[0], data[1]);
		poll.add(L.bind(this.refresh, this));

		return E('div', { 'class': 'cbi-map', 'id': 'netpath-overview' }, [
			E('h2', {}, [ _('NetPath – Overview') ]),
			E('div', { 'class': 'cbi-map-descr' }, [
				_('Live state of each uplink as the NetPath agent sees it. Charts cover the last %d updates.').format(SAMPLES)
			]),
			this.nodes.banner,
			E('div', { 'class': 'cbi-section' }, [ E('h3', {}, [ _('Uplinks') ]), this.nodes.uplinks ]),
			E('div', { 'class': 'cbi-section' }, [ E('h3', {}, [ _('Policies') ]), this.nodes.policies ]),
			E('div', { 'class': 'cbi-section' }, [ E('h3', {}, [ _('Recent state changes') ]), this.nodes.events ])
		]);
	},

	handleSaveApply: null,
	handleSave: null,
	handleReset: null
});
