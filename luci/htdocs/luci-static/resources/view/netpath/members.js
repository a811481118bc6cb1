'use strict';
'require view';
'require form';
'require uci';
'require netpath.schema as schema';

/*
 * `member` sections: an interface with a metric (lower is used first) and a weight
 * (its share among the members of the same metric). Policies list members.
 */

return view.extend({
	load() {
		return uci.load('netpath');
	},

	render() {
		let m, s, o;

		m = new form.Map('netpath', _('NetPath – Members'),
			_('A member puts an interface into a policy with a metric and a weight. ' +
			  'Members of the lowest metric that are online share the traffic by weight; ' +
			  'higher metrics take over when all of them are down.'));

		s = schema.namedGrid(m, 'member', _('Members'), _('Add member'),
			_('A member name is 1-32 letters, digits or underscores.'));

		o = s.option(form.ListValue, 'interface', _('Interface'));
		uci.sections('netpath', 'interface').forEach((iface) => o.value(iface['.name']));
		o.rmempty = false;

		o = s.option(form.Value, 'metric', _('Metric'),
			_('1-256; lower metrics are used first.'));
		o.placeholder = '1';
		o.editable = true;
		o.validate = schema.option(schema.integer(1, 256));

		o = s.option(form.Value, 'weight', _('Weight'),
			_('1-1000; the share of traffic among members of the same metric.'));
		o.placeholder = '1';
		o.editable = true;
		o.validate = schema.option(schema.integer(1, 1000));

		return m.render();
	}
});
