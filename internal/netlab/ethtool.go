package netlab

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ethtoolValue is struct ethtool_value of <linux/ethtool.h>.
type ethtoolValue struct {
	cmd  uint32
	data uint32
}

// ifreqData is struct ifreq with ifr_data set: the interface name, then a
// pointer, padded to the size of the kernel's union.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// setTxChecksum turns transmit checksum offload of the interface dev (in
// the calling thread's namespace) on or off, as `ethtool -K dev tx on|off`
// does. Off, the kernel completes every checksum before a frame leaves, so
// frames read from the peer with AF_PACKET can be relayed as they are.
func setTxChecksum(dev string, on bool) error {
	v := uint32(0)
	if on {
		v = 1
	}
	if _, err := ethtool(dev, unix.ETHTOOL_STXCSUM, v); err != nil {
		return fmt.Errorf("ethtool -K %s tx %v: %w", dev, on, err)
	}
	return nil
}

// txChecksum reports whether transmit checksum offload of dev is on.
func txChecksum(dev string) (bool, error) {
	v, err := ethtool(dev, unix.ETHTOOL_GTXCSUM, 0)
	if err != nil {
		return false, fmt.Errorf("ethtool -k %s: %w", dev, err)
	}
	return v != 0, nil
}

// ethtool issues the SIOCETHTOOL command cmd with data for dev and returns
// the data the kernel left in the ethtool_value.
func ethtool(dev string, cmd, data uint32) (uint32, error) {
	if len(dev) >= unix.IFNAMSIZ {
		return 0, fmt.Errorf("interface name %q is too long", dev)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	val := &ethtoolValue{cmd: cmd, data: data}
	req := &ifreqData{data: unsafe.Pointer(val)}
	copy(req.name[:], dev)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(req)))
	runtime.KeepAlive(req)
	runtime.KeepAlive(val)
	if errno != 0 {
		return 0, errno
	}
	return val.data, nil
}
