'use strict';
'require view';
'require form';
'require uci';
'require netpath.schema as schema';

/*
 * `rule` sections, in order: the first rule a connection matches sends it to a policy
 * (or to unreachable, blackhole or the main table). Drag rows to reorder them.
 */

function addressFamily(prefix) {
	return schema.family(String(prefix).trim().split('/')[0]);
}

return view.extend({
	load() {
		return uci.load('netpath');
	},

	render() {
		let m, s, o;

		m = new form.Map('netpath', _('NetPath – Rules'),
			_('Rules are tried from top to bottom; the first that matches a new connection decides. ' +
			  'Traffic no rule matches uses the main routing table.'));

		s = schema.namedGrid(m, 'rule', _('Rules'), _('Add rule'),
			_('A rule name is 1-32 letters, digits or underscores.'));
		s.sortable = true;

		/* A new rule goes above the first catch-all rule (the default rule): below it, it
		 * could never match (`netpath check` warns about such a rule). */
		const addRule = s.handleAdd;
		s.handleAdd = function(ev, name) {
			const catchAll = uci.sections('netpath', 'rule').filter(schema.catchAll)[0];

			return addRule.call(this, ev, name).then(() => {
				if (catchAll && name && uci.get('netpath', name) != null)
					uci.move('netpath', name, catchAll['.name']);
			});
		};

		s.tab('match', _('Match'));
		s.tab('action', _('Action'));

		/* -- match -------------------------------------------------------------------- */

		o = s.taboption('match', form.ListValue, 'family', _('Family'));
		o.value('any', _('any'));
		o.value('ipv4', 'IPv4');
		o.value('ipv6', 'IPv6');
		o.default = 'any';

		o = s.taboption('match', form.Value, 'proto', _('Protocol'));
		schema.PROTOCOLS.forEach((proto) => o.value(proto));
		o.default = 'all';
		o.validate = function(section_id, value) {
			if (!value)
				return true;

			const valid = schema.proto(value);
			const family = schema.fieldValue(this.section, section_id, 'family', 'any');
			const proto = value.trim().toLowerCase();

			if (valid !== true)
				return valid;

			if ((proto == 'icmp' && family == 'ipv6') || (proto == 'icmpv6' && family == 'ipv4'))
				return _('%s does not exist in %s').format(proto, family);

			return true;
		};

		const addressCheck = function(section_id, value) {
			if (!value)
				return true;

			const valid = schema.prefix(value);

			if (valid !== true)
				return valid;

			const family = schema.fieldValue(this.section, section_id, 'family', 'any');
			const mine = addressFamily(value);
			const others = schema.listOf(schema.fieldValue(this.section, section_id, 'src_ip', []))
				.concat(schema.listOf(schema.fieldValue(this.section, section_id, 'dest_ip', [])))
				.map(addressFamily).filter((f) => f && f != mine);

			if (family != 'any' && mine != family)
				return _('an %s address (the rule\'s family)').format(family == 'ipv6' ? 'IPv6' : 'IPv4');

			return others.length ? _('one family per rule: this rule already has %s addresses').format(others[0]) : true;
		};

		o = s.taboption('match', form.DynamicList, 'src_ip', _('Source'),
			_('Addresses or prefixes (192.168.1.0/24, or address/netmask).'));
		o.validate = addressCheck;

		o = s.taboption('match', form.DynamicList, 'dest_ip', _('Destination'));
		o.validate = addressCheck;

		const portCheck = function(section_id, value) {
			if (!value)
				return true;

			const valid = schema.ports(value);
			const proto = String(schema.fieldValue(this.section, section_id, 'proto', 'all')).trim().toLowerCase();

			if (valid !== true)
				return valid;

			return (schema.PORT_PROTOCOLS.indexOf(proto) != -1) ? true
				: _('ports need protocol tcp, udp, sctp, udplite or all (this rule has %s)').format(proto);
		};

		o = s.taboption('match', form.Value, 'src_port', _('Source ports'));
		o.placeholder = '1024-65535';
		o.modalonly = true;
		o.validate = portCheck;

		o = s.taboption('match', form.Value, 'dest_port', _('Destination ports'),
			_('A port, a list (80,443) or a range (1000-2000).'));
		o.validate = portCheck;

		o = s.taboption('match', form.Value, 'src_iface', _('Incoming device'),
			_('Only traffic arriving on this device (e.g. <code>br-lan</code>).'));
		o.modalonly = true;
		o.validate = schema.option(schema.device);

		o = s.taboption('match', form.Value, 'src_ipset', _('Source set'),
			_('Name of an nftables set of source addresses, filled at run time.'));
		o.modalonly = true;
		o.validate = schema.option(schema.name);

		o = s.taboption('match', form.Value, 'ipset', _('Destination set'),
			_('Name of an nftables set of destination addresses (e.g. filled by dnsmasq).'));
		o.modalonly = true;
		o.validate = schema.option(schema.name);

		/* -- action ------------------------------------------------------------------- */

		o = s.taboption('action', form.ListValue, 'policy', _('Policy'));
		uci.sections('netpath', 'policy').forEach((policy) => o.value(policy['.name']));
		o.value('unreachable', _('unreachable (reject)'));
		o.value('blackhole', _('blackhole (drop)'));
		o.value('default', _('default (main routing table)'));
		o.rmempty = false;
		o.validate = function(section_id, value) {
			const sticky = schema.fieldValue(this.section, section_id, 'sticky', '0');

			if (sticky == '1' && schema.SPECIAL_TARGETS.indexOf(value) != -1)
				return _('sticky needs a policy to stick to, not %s').format(value);

			return true;
		};

		o = s.taboption('action', form.Flag, 'sticky', _('Sticky'),
			_('Keep each source address on the uplink it got, for the timeout below.'));
		o.default = o.disabled;

		o = s.taboption('action', form.Value, 'timeout', _('Sticky timeout (s)'));
		o.placeholder = '600';
		o.depends('sticky', '1');
		o.modalonly = true;
		o.validate = schema.option(schema.integer(1, 1000000));

		o = s.taboption('action', form.Flag, 'logging', _('Log matches'));
		o.default = o.disabled;
		o.modalonly = true;

		return m.render();
	}
});
