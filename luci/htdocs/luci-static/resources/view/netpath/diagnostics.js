'use strict';
'require view';
'require dom';
'require rpc';
'require uci';
'require ui';
'require netpath.schema as schema';

/*
 * Diagnostics: explain where a packet goes (the compiled bundle's rules and policies,
 * with the agent's live interface states), ping through one uplink, and show the
 * nftables ruleset NetPath generated.
 */

const callExplain = rpc.declare({
	object: 'luci.netpath',
	method: 'explain',
	params: [ 'src', 'dst', 'proto', 'sport', 'dport', 'iif', 'down' ],
	expect: { '': {} }
});

const callPing = rpc.declare({
	object: 'luci.netpath',
	method: 'ping',
	params: [ 'interface', 'target' ],
	expect: { '': {} }
});

const callRuleset = rpc.declare({
	object: 'luci.netpath',
	method: 'ruleset',
	expect: { '': {} }
});

const EXPLAIN_PROTOCOLS = [ 'tcp', 'udp', 'icmp', 'icmpv6', 'esp', 'ah', 'gre', 'sctp', 'udplite' ];

function field(label, widget, help) {
	return E('div', { 'class': 'cbi-value' }, [
		E('label', { 'class': 'cbi-value-title' }, [ label ]),
		E('div', { 'class': 'cbi-value-field' }, [
			widget,
			help ? E('div', { 'class': 'cbi-value-description' }, [ help ]) : ''
		])
	]);
}

/* LuCI's pattern: true when the session may only read (Ping is a write method). */
const isReadonlyView = !L.hasViewPermission() || null;

function failure(reply) {
	return E('div', { 'class': 'alert-message warning' }, [ reply.error || _('No answer from luci.netpath.') ]);
}

return view.extend({
	load() {
		return Promise.all([
			uci.load('netpath'),
			L.resolveDefault(callRuleset(), {})
		]);
	},

	readValue(id) {
		return document.getElementById(id).value.trim();
	},

	handleExplain(ev) {
		const out = document.getElementById('netpath-explain-result');
		const src = this.readValue('netpath-explain-src');
		const dst = this.readValue('netpath-explain-dst');
		/* Absent values stay out of the request (undefined is not serialised). */
		const port = (id) => {
			const text = this.readValue(id);
			return text ? +text : undefined;
		};

		for (const [ value, what ] of [ [ src, _('Source') ], [ dst, _('Destination') ] ]) {
			if (schema.address(value) !== true) {
				dom.content(out, failure({ error: _('%s: expecting an IP address').format(what) }));
				return Promise.resolve();
			}
		}

		let down;

		if (!document.getElementById('netpath-explain-live').checked)
			down = Array.prototype.map.call(
				document.querySelectorAll('input[name="netpath-explain-down"]:checked'), (box) => box.value);

		return callExplain(src, dst, this.readValue('netpath-explain-proto'),
			port('netpath-explain-sport'), port('netpath-explain-dport'),
			this.readValue('netpath-explain-iif'), down).then((reply) => {
			if (!reply.ok)
				return dom.content(out, failure(reply));

			const source = {
				agent: _('interface states from the running agent'),
				config: _('the agent is not running: interface states as configured at start'),
				request: _('interface states as chosen above')
			}[reply.state_from] || '';

			dom.content(out, [
				E('p', {}, [ E('strong', {}, [ reply.route ]) ]),
				E('pre', { 'class': 'netpath-output' }, [ reply.text ]),
				E('p', { 'class': 'cbi-value-description' }, [ source ])
			]);
		}).catch((err) => this.showFailure(out, err));
	},

	/* A rejected call (access denied, session expired, rpcd gone): say so where the answer
	 * would have gone, and as a notification. */
	showFailure(out, err) {
		dom.content(out, failure({ error: err.message }));
		schema.showError(err);
	},

	handlePing(ev) {
		const out = document.getElementById('netpath-ping-result');
		const target = this.readValue('netpath-ping-target');
		const iface = this.readValue('netpath-ping-interface');

		if (schema.address(target) !== true) {
			dom.content(out, failure({ error: _('Target: expecting an IP address') }));
			return Promise.resolve();
		}

		dom.content(out, E('em', { 'class': 'spinning' }, [ _('Pinging %s through %s…').format(target, iface) ]));

		return callPing(iface, target).then((reply) => {
			if (!reply.ok)
				return dom.content(out, failure(reply));

			dom.content(out, [
				E('p', {}, [
					E('code', {}, [ reply.command.join(' ') ]), ' ',
					E('span', { 'class': 'label ' + (reply.reachable ? 'success' : 'danger') },
						[ reply.reachable ? _('reachable') : _('no answer') ])
				]),
				E('pre', { 'class': 'netpath-output' }, [ reply.output ])
			]);
		}).catch((err) => this.showFailure(out, err));
	},

	handleRuleset(ev) {
		const out = document.getElementById('netpath-ruleset');

		return callRuleset().then((reply) => dom.content(out, this.renderRuleset(reply)))
			.catch((err) => this.showFailure(out, err));
	},

	renderRuleset(reply) {
		if (!reply.ok)
			return failure(reply);

		return [
			E('p', { 'class': 'cbi-value-description' }, [
				_('%s (bundle %s)').format(reply.bundle + '/ruleset.nft', (reply.digest || '').substring(0, 12)),
				reply.truncated ? ' ' + _('(truncated)') : ''
			]),
			E('pre', { 'class': 'netpath-output', 'id': 'netpath-ruleset-text' }, [ reply.text ])
		];
	},

	render(data) {
		const ruleset = data[1];
		const interfaces = uci.sections('netpath', 'interface').map((s) => s['.name']);

		document.querySelector('head').appendChild(E('link', {
			'rel': 'stylesheet',
			'type': 'text/css',
			'href': L.resource('view/netpath/netpath.css')
		}));

		const srcInput = E('input', { 'id': 'netpath-explain-src', 'type': 'text', 'class': 'cbi-input-text', 'value': '192.168.1.10' });
		const dstInput = E('input', { 'id': 'netpath-explain-dst', 'type': 'text', 'class': 'cbi-input-text', 'placeholder': '203.0.113.10' });
		const targetInput = E('input', { 'id': 'netpath-ping-target', 'type': 'text', 'class': 'cbi-input-text', 'placeholder': '203.0.113.10' });

		/* Empty is left to the buttons, which say what is missing. */
		ui.addValidator(srcInput, 'ipaddr(1)', true);
		ui.addValidator(dstInput, 'ipaddr(1)', true);
		ui.addValidator(targetInput, 'ipaddr(1)', true);

		return E('div', { 'class': 'cbi-map' }, [
			E('h2', {}, [ _('NetPath – Diagnostics') ]),

			E('div', { 'class': 'cbi-section' }, [
				E('h3', {}, [ _('Explain a packet') ]),
				E('div', { 'class': 'cbi-section-descr' },
					_('Walks a new connection through the rules and policies of the running configuration, like <code>netpath explain</code>.')),
				field(_('Source'), srcInput),
				field(_('Destination'), dstInput),
				field(_('Protocol'), E('select', { 'id': 'netpath-explain-proto', 'class': 'cbi-input-select' },
					EXPLAIN_PROTOCOLS.map((p) => E('option', { 'value': p }, [ p ])))),
				field(_('Source port'), E('input', { 'id': 'netpath-explain-sport', 'type': 'number', 'min': 0, 'max': 65535, 'class': 'cbi-input-text' })),
				field(_('Destination port'), E('input', { 'id': 'netpath-explain-dport', 'type': 'number', 'min': 0, 'max': 65535, 'class': 'cbi-input-text', 'value': '443' })),
				field(_('Incoming device'), E('input', { 'id': 'netpath-explain-iif', 'type': 'text', 'class': 'cbi-input-text', 'placeholder': 'br-lan' }),
					_('Empty: sent by the router itself.')),
				field(_('Interface states'), E('div', {}, [
					E('label', {}, [
						E('input', { 'id': 'netpath-explain-live', 'type': 'checkbox', 'checked': 'checked' }), ' ',
						_('as the agent sees them now')
					]),
					E('div', {}, [ _('otherwise treat as down:'), ' ' ].concat(interfaces.map((name) => E('label', { 'class': 'netpath-down' }, [
						E('input', { 'type': 'checkbox', 'name': 'netpath-explain-down', 'value': name }), ' ', name, ' '
					]))))
				])),
				E('div', { 'class': 'cbi-page-actions' }, [
					E('button', { 'class': 'btn cbi-button cbi-button-action', 'id': 'netpath-explain-go',
						'click': ui.createHandlerFn(this, 'handleExplain') }, [ _('Explain') ])
				]),
				E('div', { 'id': 'netpath-explain-result' })
			]),

			E('div', { 'class': 'cbi-section' }, [
				E('h3', {}, [ _('Ping through an uplink') ]),
				field(_('Interface'), E('select', { 'id': 'netpath-ping-interface', 'class': 'cbi-input-select' },
					interfaces.map((name) => E('option', { 'value': name }, [ name ])))),
				field(_('Target'), targetInput, _('An IP address; three echo requests leave through the interface\'s device.')),
				E('div', { 'class': 'cbi-page-actions' }, [
					E('button', { 'class': 'btn cbi-button cbi-button-action', 'id': 'netpath-ping-go',
						'disabled': isReadonlyView, 'title': isReadonlyView ? _('Needs write access to NetPath') : null,
						'click': ui.createHandlerFn(this, 'handlePing') }, [ _('Ping') ])
				]),
				E('div', { 'id': 'netpath-ping-result' })
			]),

			E('div', { 'class': 'cbi-section' }, [
				E('h3', {}, [ _('Generated ruleset') ]),
				E('div', { 'class': 'cbi-page-actions' }, [
					E('button', { 'class': 'btn cbi-button', 'id': 'netpath-ruleset-go',
						'click': ui.createHandlerFn(this, 'handleRuleset') }, [ _('Reload') ])
				]),
				E('div', { 'id': 'netpath-ruleset' }, this.renderRuleset(ruleset))
			])
		]);
	},

	handleSaveApply: null,
	handleSave: null,
	handleReset: null
});
