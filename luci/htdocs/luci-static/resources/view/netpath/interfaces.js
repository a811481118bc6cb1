'use strict';
'require view';
'require form';
'require uci';
'require netpath.schema as schema';

/*
 * /etc/config/netpath: the globals section and one `interface` section per uplink,
 * with the UCI option names the compiler reads (tracking options flat, track_*).
 * Checks mirror compiler/validate.py; defaults are shown as placeholders and left
 * out of the file, so the compiler's defaults apply.
 */

function otherSections(type, section_id) {
	return uci.sections('netpath', type).filter((s) => s['.name'] != section_id);
}

function targetsOf(section, section_id) {
	return schema.listOf(schema.fieldValue(section, section_id, 'track_targets', []));
}

return view.extend({
	load() {
		return uci.load('netpath');
	},

	render() {
		let m, s, o;

		m = new form.Map('netpath', _('NetPath – Interfaces'),
			_('Each interface is one uplink: the device it sends through and how its health is tracked. ' +
			  'Section names are 1-32 letters, digits or underscores.'));

		s = m.section(form.NamedSection, 'globals', 'globals', _('Global settings'));

		o = s.option(form.Flag, 'enabled', _('Enabled'),
			_('When off, the service does not start the agent.'));
		o.default = o.enabled;

		o = s.option(form.Value, 'nft_table', _('nftables table'),
			_('NetPath keeps its rules in the table <code>inet NAME</code>.'));
		o.placeholder = 'netpath';
		o.validate = schema.option(schema.tableName);

		o = s.option(form.Value, 'mark_mask', _('Mark mask'),
			_('Bits of the packet and connection mark NetPath may use (3 to 8 bits). ' +
			  'Keep clear of other users of marks.'));
		o.placeholder = '0x3F00';
		o.validate = schema.option(schema.mask);

		o = s.option(form.Value, 'route_table_base', _('First routing table'),
			_('Interface N routes through table base + N.'));
		o.placeholder = '1000';
		o.validate = schema.option(schema.integer(1, 250000));

		o = s.option(form.Value, 'route_protocol', _('Route protocol'),
			_('Routes NetPath adds carry this protocol number, so it finds its own.'));
		o.placeholder = '93';
		o.validate = schema.option(schema.integer(5, 254));

		o = s.option(form.Flag, 'logging', _('Log rule matches'));
		o.default = o.disabled;

		o = s.option(form.ListValue, 'loglevel', _('Log level'));
		schema.LOG_LEVELS.forEach((level) => o.value(level));
		o.default = 'notice';
		o.depends('logging', '1');

		s = schema.namedGrid(m, 'interface', _('Interfaces'), _('Add interface'),
			_('An interface name is 1-32 letters, digits or underscores.'));

		s.tab('general', _('General'));
		s.tab('tracking', _('Tracking'));
		s.tab('quality', _('Link quality'));

		/* -- general ------------------------------------------------------------------ */

		o = s.taboption('general', form.Flag, 'enabled', _('Enabled'));
		o.default = o.enabled;
		o.editable = true;

		o = s.taboption('general', form.Value, 'ifname', _('Device'),
			_('A device (<code>eth1</code>) or an OpenWrt logical interface (<code>wan</code>, <code>wwan</code>).'));
		o.rmempty = false;
		o.validate = function(section_id, value) {
			const valid = schema.device(value);

			if (valid !== true)
				return valid;

			const family = schema.fieldValue(this.section, section_id, 'family', 'ipv4');
			const twin = otherSections('interface', section_id).filter((other) =>
				other.ifname == value && (other.family || 'ipv4') == family)[0];

			return twin ? _('device %s (%s) is also used by interface %s').format(value, family, twin['.name']) : true;
		};

		o = s.taboption('general', form.ListValue, 'family', _('Family'));
		o.value('ipv4', 'IPv4');
		o.value('ipv6', 'IPv6');
		o.default = 'ipv4';

		o = s.taboption('general', form.Value, 'gateway', _('Gateway'),
			_('Leave empty to use the gateway the system learns for the device.'));
		o.modalonly = true;
		o.validate = function(section_id, value) {
			if (!value)
				return true;

			return schema.addressOf(schema.fieldValue(this.section, section_id, 'family', 'ipv4'))(value);
		};

		o = s.taboption('general', form.Flag, 'masquerade', _('Masquerade'),
			_('Normally fw4 masquerades through the WAN zone; turn on only for a device outside any masquerading zone.'));
		o.default = o.disabled;
		o.modalonly = true;

		o = s.taboption('general', form.MultiValue, 'flush_conntrack', _('Flush connections on'),
			_('Events after which the connections using this interface are deleted, so they move at once.'));
		schema.FLUSH_EVENTS.forEach((event) => o.value(event));
		o.modalonly = true;

		o = s.taboption('general', form.Value, 'id', _('Mark id'),
			_('Fixed number of this interface in the mark; empty assigns one.'));
		o.modalonly = true;
		o.validate = function(section_id, value) {
			if (!value)
				return true;

			const valid = schema.integer(1, schema.MAX_ID)(value);

			if (valid !== true)
				return valid;

			const twin = otherSections('interface', section_id).filter((other) => +other.id == +value)[0];

			return twin ? _('id %d is also used by interface %s').format(+value, twin['.name']) : true;
		};

		/* -- tracking ----------------------------------------------------------------- */

		o = s.taboption('tracking', form.ListValue, 'track_method', _('Tracking method'));
		schema.TRACK_METHODS.forEach((method) => o.value(method));
		o.default = 'ping';

		o = s.taboption('tracking', form.DynamicList, 'track_targets', _('Tracking targets'),
			_('IP addresses to probe; httping also takes host names.'));
		o.validate = function(section_id, value) {
			if (!value)
				return true;

			const valid = schema.trackTarget(value);

			if (valid !== true)
				return valid;

			const method = schema.fieldValue(this.section, section_id, 'track_method', 'ping');
			const family = schema.fieldValue(this.section, section_id, 'family', 'ipv4');
			const ipFamily = schema.family(value.trim());

			if (!ipFamily && method != 'httping')
				return _('%s needs IP addresses (host names work for httping)').format(method);

			if (ipFamily && ipFamily != family)
				return _('an %s address (the interface\'s family)').format(family == 'ipv6' ? 'IPv6' : 'IPv4');

			return true;
		};

		o = s.taboption('tracking', form.Value, 'reliability', _('Reliability'),
			_('How many targets must answer for a probe round to count as a success.'));
		o.placeholder = '1';
		o.modalonly = true;
		o.validate = function(section_id, value) {
			if (!value)
				return true;

			const valid = schema.integer(1, 100)(value);
			const targets = targetsOf(this.section, section_id);

			if (valid !== true)
				return valid;

			return (targets.length && +value > targets.length)
				? _('at most the number of targets (%d)').format(targets.length) : true;
		};

		const counts = [
			[ 'count', _('Probes per target'), '1', schema.integer(1, 100) ],
			[ 'timeout', _('Probe timeout (s)'), '4', schema.number(0.05, 60) ],
			[ 'interval', _('Interval (s)'), '10', schema.number(0.05, 3600) ],
			[ 'failure_interval', _('Interval while failing (s)'), '', schema.number(0.05, 3600) ],
			[ 'recovery_interval', _('Interval while recovering (s)'), '', schema.number(0.05, 3600) ],
			[ 'down', _('Failures until offline'), '5', schema.integer(1, 100) ],
			[ 'up', _('Successes until online'), '5', schema.integer(1, 100) ],
			[ 'size', _('Probe size (bytes)'), '56', schema.integer(1, 65507) ],
			[ 'max_ttl', _('Probe TTL'), '60', schema.integer(1, 255) ]
		];

		for (const [ name, title, placeholder, check ] of counts) {
			o = s.taboption('tracking', form.Value, name, title);
			o.placeholder = placeholder;
			o.modalonly = true;
			o.validate = schema.option(check);
		}

		o = s.taboption('tracking', form.Flag, 'keep_failure_interval', _('Keep the failure interval while offline'));
		o.default = o.disabled;
		o.modalonly = true;

		o = s.taboption('tracking', form.ListValue, 'initial_state', _('State at start'));
		o.value('online', _('Online'));
		o.value('offline', _('Offline'));
		o.default = 'online';
		o.modalonly = true;

		o = s.taboption('tracking', form.Value, 'http_url', _('URL'));
		o.placeholder = 'http://www.example.com/';
		o.depends('track_method', 'httping');
		o.modalonly = true;
		o.validate = schema.option(schema.url);

		o = s.taboption('tracking', form.Value, 'http_status', _('Expected HTTP status'));
		o.placeholder = '200';
		o.depends('track_method', 'httping');
		o.modalonly = true;
		o.validate = schema.option(schema.integer(0, 599));

		o = s.taboption('tracking', form.Value, 'dns_query', _('DNS query name'));
		o.placeholder = '.';
		o.depends('track_method', 'dns');
		o.modalonly = true;
		o.validate = schema.option(schema.dnsName);

		o = s.taboption('tracking', form.ListValue, 'dns_type', _('DNS query type'));
		schema.DNS_TYPES.forEach((type) => o.value(type));
		o.default = 'NS';
		o.depends('track_method', 'dns');
		o.modalonly = true;

		/* -- link quality ------------------------------------------------------------- */

		o = s.taboption('quality', form.Flag, 'check_quality', _('Check link quality'),
			_('Also take the uplink offline when latency or loss pass the failure levels.'));
		o.default = o.disabled;
		o.modalonly = true;

		const levels = [
			[ 'failure_latency', _('Failure latency (ms)'), '1000', schema.number(1, 60000), null ],
			[ 'recovery_latency', _('Recovery latency (ms)'), '500', schema.number(1, 60000), 'failure_latency' ],
			[ 'failure_loss', _('Failure loss (%)'), '40', schema.number(0, 100), null ],
			[ 'recovery_loss', _('Recovery loss (%)'), '10', schema.number(0, 100), 'failure_loss' ]
		];

		for (const [ name, title, placeholder, check, above ] of levels) {
			o = s.taboption('quality', form.Value, name, title);
			o.placeholder = placeholder;
			o.depends('check_quality', '1');
			o.modalonly = true;
			o.validate = function(section_id, value) {
				if (!value)
					return true;

				const valid = check(value);

				if (valid !== true || !above)
					return valid;

				const defaults = { failure_latency: 1000, failure_loss: 40 };
				const limit = +schema.fieldValue(this.section, section_id, above, defaults[above]);

				return (+value <= limit) ? true : _('at most %s (recovery must be the stricter level)').format(String(limit));
			};
		}

		return m.render();
	}
});
