'use strict';
'require view';
'require form';
'require uci';
'require netpath.schema as schema';

/*
 * `policy` sections: which members carry the traffic a rule sends here, how it is
 * spread among them (mode) and what happens when none is online (last resort).
 */

const MODE_LABELS = {
	'balanced': _('balanced: new connections spread by weight'),
	'failover': _('failover: the lowest metric only, no spreading'),
	'round-robin': _('round-robin: connections take turns'),
	'hash': _('hash: by source address, the same client sticks'),
	'weighted': _('weighted: spread by weight across all metrics'),
	'random': _('random: each connection picks at random')
};

const LAST_RESORT_LABELS = {
	'unreachable': _('unreachable: reject with ICMP'),
	'blackhole': _('blackhole: drop silently'),
	'default': _('default: use the main routing table')
};

return view.extend({
	load() {
		return uci.load('netpath');
	},

	render() {
		let m, s, o;

		m = new form.Map('netpath', _('NetPath – Policies'),
			_('A policy is the set of members a rule sends traffic to. ' +
			  'A policy uses each interface once and takes at most %d members.').format(schema.MAX_MEMBERS_PER_POLICY));

		s = schema.namedGrid(m, 'policy', _('Policies'), _('Add policy'),
			_('A policy name is 1-32 letters, digits or underscores.'));

		o = s.option(form.MultiValue, 'members', _('Members'));
		uci.sections('netpath', 'member').forEach((member) => {
			o.value(member['.name'], '%s (%s, metric %s, weight %s)'.format(member['.name'],
				member.interface || '?', member.metric || '1', member.weight || '1'));
		});
		o.rmempty = false;
		o.validate = function(section_id, value) {
			const names = schema.listOf(value);
			const seen = {};

			if (!names.length)
				return _('at least one member');

			if (names.length > schema.MAX_MEMBERS_PER_POLICY)
				return _('at most %d members').format(schema.MAX_MEMBERS_PER_POLICY);

			for (const name of names) {
				const iface = uci.get('netpath', name, 'interface');

				if (iface && seen[iface])
					return _('members %s and %s both use interface %s; a policy uses each interface once').format(seen[iface], name, iface);

				seen[iface] = name;
			}

			return true;
		};

		o = s.option(form.ListValue, 'mode', _('Mode'));
		schema.MODES.forEach((mode) => o.value(mode, MODE_LABELS[mode]));
		o.default = 'balanced';
		o.textvalue = function(section_id) {
			return this.cfgvalue(section_id) || this.default;
		};

		o = s.option(form.ListValue, 'last_resort', _('When no member is online'));
		schema.LAST_RESORTS.forEach((kind) => o.value(kind, LAST_RESORT_LABELS[kind]));
		o.default = 'unreachable';
		o.textvalue = function(section_id) {
			return this.cfgvalue(section_id) || this.default;
		};

		return m.render();
	}
});
