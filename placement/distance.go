package placement

import "math"

// earthRadiusKm is the Earth's mean radius (IUGG), in kilometres.
const earthRadiusKm = 6371.0088

// Distance returns the great-circle distance in kilometres between a and b,
// each (latitude, longitude) in degrees, by the haversine formula on a
// spherical Earth (within about 0.5% of the ellipsoidal distance).
func Distance(a, b [2]float64) float64 {
	const rad = math.Pi / 180
	lat1, lat2 := a[0]*rad, b[0]*rad
	dLat, dLon := lat2-lat1, (b[1]-a[1])*rad
	h := sin2(dLat/2) + math.Cos(lat1)*math.Cos(lat2)*sin2(dLon/2)
	return 2 * earthRadiusKm * math.Asin(math.Sqrt(min(h, 1)))
}

func sin2(x float64) float64 {
	s := math.Sin(x)
	return s * s
}
