package homeassistant

import "regexp"

// What Home Assistant accepts, as its MQTT integration's code says. These
// are facts about an interface, written down once here so that every test
// checks the payloads against them; each names the file it comes from
// (home-assistant/core, homeassistant/components/...).

// haTopicMatcher is TOPIC_MATCHER of mqtt/discovery.py, applied to a
// discovery topic without its "{prefix}/"; anchored at the end here, since
// a config topic must be nothing but this.
var haTopicMatcher = regexp.MustCompile(`^(?P<component>\w+)/(?:(?P<node_id>[a-zA-Z0-9_-]+)/)?(?P<object_id>[a-zA-Z0-9_-]+)/config$`)

// haValidEntityID is valid_entity_id of homeassistant/core.py: lower case
// a-z, 0-9 and '_', no "__", no '_' at either end of either part.
var haValidEntityID = regexp.MustCompile(`^(?:[a-z0-9]+_)*[a-z0-9]+\.(?:[a-z0-9]+_)*[a-z0-9]+$`)

// Keys every MQTT entity takes: MQTT_RO_SCHEMA and MQTT_BASE_SCHEMA
// (mqtt/config.py: state_topic, value_template, qos, encoding, group), the
// availability schemas and MQTT_ENTITY_COMMON_SCHEMA (mqtt/schemas.py).
var haCommonKeys = []string{
	"state_topic", "value_template", "qos", "encoding", "group",
	"availability", "availability_mode", "availability_template", "availability_topic",
	"payload_available", "payload_not_available",
	"device", "entity_picture", "origin", "enabled_by_default", "entity_category", "icon",
	"json_attributes_topic", "json_attributes_template", "default_entity_id",
	"message_expiry_interval", "unique_id", "visible_by_default",
}

// haSchemaKeys are the discovery schema keys of each platform:
// _PLATFORM_SCHEMA_BASE of mqtt/sensor.py and PLATFORM_SCHEMA_MODERN of
// mqtt/binary_sensor.py, each extended by haCommonKeys.
var haSchemaKeys = map[string][]string{
	"sensor": append([]string{
		"device_class", "expire_after", "force_update", "last_reset_value_template", "name",
		"options", "suggested_display_precision", "state_class", "unit_of_measurement",
	}, haCommonKeys...),
	"binary_sensor": append([]string{
		"device_class", "expire_after", "force_update", "name", "off_delay", "payload_off", "payload_on",
	}, haCommonKeys...),
}

// haDeviceKeys is MQTT_ENTITY_DEVICE_INFO_SCHEMA (mqtt/schemas.py), a
// strict schema: any other key makes Home Assistant refuse the message.
var haDeviceKeys = []string{
	"identifiers", "connections", "manufacturer", "model", "model_id", "name", "hw_version",
	"serial_number", "sw_version", "via_device", "suggested_area", "configuration_url",
}

// haOriginKeys is MQTT_ORIGIN_INFO_SCHEMA (mqtt/schemas.py), strict too;
// name is required.
var haOriginKeys = []string{"name", "sw_version", "support_url"}

// haAbbreviations are the short forms mqtt/discovery.py expands
// (_replace_all_abbreviations, with the tables of mqtt/abbreviations.py)
// that stand for a different key: a payload that used one of these as a
// full key would have it renamed. Taken from abbreviations.py at commit
// 911803bfd294b1ba1f541af01f6d37666ae4e384 and the newer entries of the
// integration's documentation (o, cmps, p, def_ent_id, ...). Identity
// entries ("name": "name", "max": "max", ...) are left out.
var haAbbreviations = []string{
	"act_t", "act_tpl", "atype", "aux_cmd_t", "aux_stat_tpl", "aux_stat_t", "av_tones", "avty",
	"avty_mode", "avty_t", "avty_tpl", "away_mode_cmd_t", "away_mode_stat_tpl", "away_mode_stat_t",
	"b_tpl", "bri_cmd_tpl", "bri_cmd_t", "bri_scl", "bri_stat_t", "bri_tpl", "bri_val_tpl",
	"clr_temp_cmd_tpl", "bat_lev_t", "bat_lev_tpl", "chrg_t", "chrg_tpl", "clrm", "clrm_stat_t",
	"clrm_val_tpl", "clr_temp_cmd_t", "clr_temp_stat_t", "clr_temp_tpl", "clr_temp_val_tpl",
	"cln_t", "cln_tpl", "cmd_off_tpl", "cmd_on_tpl", "cmd_t", "cmd_tpl", "cod_arm_req",
	"cod_dis_req", "cod_trig_req", "curr_temp_t", "curr_temp_tpl", "dev", "dev_cla", "dock_t",
	"dock_tpl", "e", "en", "ent_cat", "err_t", "err_tpl", "fanspd_t", "fanspd_tpl", "fanspd_lst",
	"flsh_tlng", "flsh_tsht", "fx_cmd_tpl", "fx_cmd_t", "fx_list", "fx_stat_t", "fx_tpl",
	"fx_val_tpl", "exp_aft", "fan_mode_cmd_tpl", "fan_mode_cmd_t", "fan_mode_stat_tpl",
	"fan_mode_stat_t", "frc_upd", "g_tpl", "hold_cmd_tpl", "hold_cmd_t", "hold_stat_tpl",
	"hold_stat_t", "hs_cmd_t", "hs_stat_t", "hs_val_tpl", "ic", "img_e", "init", "hum_cmd_t",
	"hum_cmd_tpl", "hum_stat_t", "hum_state_tpl", "json_attr", "json_attr_t", "json_attr_tpl",
	"lrst_t", "lrst_val_tpl", "max_hum", "min_hum", "max_mirs", "min_mirs", "mode_cmd_tpl",
	"mode_cmd_t", "mode_stat_t", "mode_stat_tpl", "obj_id", "off_dly", "on_cmd_type", "ops",
	"opt", "osc_cmd_t", "osc_cmd_tpl", "osc_stat_t", "osc_val_tpl", "pct_cmd_t", "pct_cmd_tpl",
	"pct_stat_t", "pct_val_tpl", "pl", "pl_arm_away", "pl_arm_home", "pl_arm_nite",
	"pl_arm_vacation", "pl_arm_custom_b", "pl_avail", "pl_cln_sp", "pl_cls", "pl_disarm",
	"pl_hi_spd", "pl_home", "pl_lock", "pl_loc", "pl_lo_spd", "pl_med_spd", "pl_not_avail",
	"pl_not_home", "pl_off", "pl_off_spd", "pl_on", "pl_open", "pl_osc_off", "pl_osc_on",
	"pl_paus", "pl_prs", "pl_rst", "pl_rst_hum", "pl_rst_mode", "pl_rst_pct", "pl_rst_pr_mode",
	"pl_stop", "pl_strt", "pl_stpa", "pl_ret", "pl_toff", "pl_ton", "pl_trig", "pl_unlk",
	"pos_clsd", "pos_open", "pow_cmd_t", "pow_stat_t", "pow_stat_tpl", "pr_mode_cmd_t",
	"pr_mode_cmd_tpl", "pr_mode_stat_t", "pr_mode_val_tpl", "pr_modes", "r_tpl", "ret",
	"rgb_cmd_tpl", "rgb_cmd_t", "rgb_stat_t", "rgb_val_tpl", "rgbw_cmd_tpl", "rgbw_cmd_t",
	"rgbw_stat_t", "rgbw_val_tpl", "rgbww_cmd_tpl", "rgbww_cmd_t", "rgbww_stat_t",
	"rgbww_val_tpl", "send_cmd_t", "set_fan_spd_t", "set_pos_tpl", "set_pos_t", "pos_t",
	"pos_tpl", "spd_cmd_t", "spd_stat_t", "spd_rng_min", "spd_rng_max", "spd_val_tpl", "spds",
	"src_type", "stat_cla", "stat_clsd", "stat_closing", "stat_off", "stat_on", "stat_open",
	"stat_opening", "stat_stopped", "stat_locked", "stat_unlocked", "stat_t", "stat_tpl",
	"stat_val_tpl", "stype", "sup_dur", "sup_vol", "sup_feat", "sup_clrm", "swing_mode_cmd_tpl",
	"swing_mode_cmd_t", "swing_mode_stat_tpl", "swing_mode_stat_t", "temp_cmd_tpl",
	"temp_cmd_t", "temp_hi_cmd_tpl", "temp_hi_cmd_t", "temp_hi_stat_tpl", "temp_hi_stat_t",
	"temp_lo_cmd_tpl", "temp_lo_cmd_t", "temp_lo_stat_tpl", "temp_lo_stat_t", "temp_stat_tpl",
	"temp_stat_t", "temp_unit", "tilt_clsd_val", "tilt_cmd_t", "tilt_cmd_tpl", "tilt_inv_stat",
	"tilt_opnd_val", "tilt_opt", "tilt_status_t", "tilt_status_tpl", "t", "uniq_id",
	"unit_of_meas", "val_tpl", "whit_cmd_t", "whit_scl", "whit_val_cmd_t", "whit_val_scl",
	"whit_val_stat_t", "whit_val_tpl", "xy_cmd_t", "xy_stat_t", "xy_val_tpl",
	// newer: origin, device-based discovery, default_entity_id, display precision
	"o", "cmps", "p", "def_ent_id", "sug_dsp_prc", "ent_pic", "l_ver_t", "l_ver_tpl", "tit",
	"rel_s", "rel_u", "pl_inst", "migr_discvry",
}

// haDeviceAbbreviations and haOriginAbbreviations are the short forms of
// DEVICE_ABBREVIATIONS and ORIGIN_ABBREVIATIONS (mqtt/abbreviations.py).
var (
	haDeviceAbbreviations = []string{"cns", "cu", "ids", "mf", "mdl", "mdl_id", "hw", "sw", "sa", "sn"}
	haOriginAbbreviations = []string{"sw", "url"}
)

// haDeviceClassUnits is DEVICE_CLASS_UNITS of sensor/const.py for the
// device classes gatewayd uses: UnitOfTemperature, PERCENTAGE and
// UnitOfPressure. The MQTT sensor refuses any other unit with these classes.
var haDeviceClassUnits = map[string][]string{
	"temperature":          {"°C", "°F", "K"},
	"humidity":             {"%"},
	"battery":              {"%"},
	"pressure":             {"Pa", "hPa", "kPa", "bar", "cbar", "mbar", "mmHg", "inHg", "inH2O", "psi", "mPa"},
	"atmospheric_pressure": {"Pa", "hPa", "kPa", "bar", "cbar", "mbar", "mmHg", "inHg", "inH2O", "psi", "mPa"},
}

// haMeasurementClasses are the sensor device classes whose
// DEVICE_CLASS_STATE_CLASSES (sensor/const.py) allow measurement.
var haMeasurementClasses = []string{"temperature", "humidity", "battery", "pressure", "atmospheric_pressure"}

// haBinaryDeviceClasses are BinarySensorDeviceClass values
// (binary_sensor/__init__.py) gatewayd uses.
var haBinaryDeviceClasses = []string{"battery", "connectivity"}

// haEntityCategories is ENTITY_CATEGORIES_SCHEMA (helpers/entity.py).
var haEntityCategories = []string{"config", "diagnostic"}
