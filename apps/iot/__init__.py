"""my-iot-app applications: tracker, worker, monitor, dashboard and the device simulator."""

__version__ = "0.1.0"
