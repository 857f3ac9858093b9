#!/usr/bin/python3
"""A Modbus RTU slave for gatewayd's tests: pymodbus (Debian's
python3-pymodbus) serving several unit ids on one serial port, as several
transmitters share one RS-485 line.

    slave.py PORT BAUD UNITS_JSON

UNITS_JSON maps a unit id to its tables, each a map of register address
(0-based, as on the wire) to value: {"1": {"ir": {"1": 215}}, "2": {"hr":
{"0": 456}}}. A unit id that is not listed does not answer, like a
transmitter that is unplugged. Runs until killed.
"""
import json
import logging
import sys

from pymodbus.datastore import (ModbusServerContext, ModbusSlaveContext,
                                ModbusSparseDataBlock)
from pymodbus.server import StartSerialServer
from pymodbus.transaction import ModbusRtuFramer


def main():
    port, baud, units = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    logging.basicConfig(level=logging.WARNING)
    slaves = {}
    for unit, tables in units.items():
        blocks = {}
        for table in ("ir", "hr"):
            values = {int(a): int(v) for a, v in tables.get(table, {}).items()}
            blocks[table] = ModbusSparseDataBlock(values or {0: 0})
        slaves[int(unit)] = ModbusSlaveContext(zero_mode=True, **blocks)
    context = ModbusServerContext(slaves=slaves, single=False)
    print("serving", port, file=sys.stderr, flush=True)
    StartSerialServer(context=context, framer=ModbusRtuFramer, port=port,
                      baudrate=baud, ignore_missing_slaves=True)


if __name__ == "__main__":
    main()
