//! `GEO_DISTANCE(lat1, lon1, lat2, lon2 [, unit])`: the great-circle
//! distance between two points in degrees, by the haversine formula on a
//! sphere of the Earth's mean radius, in kilometres (`'KM'`, the default
//! and what a null unit means) or miles (`'MI'`, `'MILES'`).

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, exec_err};

use super::rowwise::{Arg, RowKind, double, expect, text};

const EARTH_RADIUS_KM: f64 = 6371.0;
const EARTH_RADIUS_MI: f64 = 3959.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GeoDistance;

impl RowKind for GeoDistance {
    fn name(&self) -> &'static str {
        "geo_distance"
    }

    fn coerce(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        use Arg::*;
        expect(
            self.name(),
            args,
            &[
                &[Double, Double, Double, Double],
                &[Double, Double, Double, Double, Str],
            ],
        )
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn call(&self, args: &[ScalarValue], _: &DataType) -> Result<ScalarValue> {
        let coords: Option<Vec<f64>> = args.iter().take(4).map(double).collect();
        let Some([lat1, lon1, lat2, lon2]) =
            coords.as_deref().and_then(|c| <[f64; 4]>::try_from(c).ok())
        else {
            return Ok(ScalarValue::Null);
        };
        let radius = match args.get(4).and_then(text).map(|u| u.trim().to_uppercase()) {
            None => EARTH_RADIUS_KM,
            Some(u) if u == "KM" || u == "KILOMETERS" || u == "KILOMETRES" => EARTH_RADIUS_KM,
            Some(u) if u == "MI" || u == "MILES" => EARTH_RADIUS_MI,
            Some(u) => {
                return exec_err!("GEO_DISTANCE: unknown unit '{u}': use 'KM' or 'MI'");
            }
        };
        if !(-90.0..=90.0).contains(&lat1) || !(-90.0..=90.0).contains(&lat2) {
            return exec_err!("GEO_DISTANCE: latitudes must be between -90 and 90");
        }
        if !(-180.0..=180.0).contains(&lon1) || !(-180.0..=180.0).contains(&lon2) {
            return exec_err!("GEO_DISTANCE: longitudes must be between -180 and 180");
        }
        Ok(ScalarValue::Float64(Some(
            haversine(lat1, lon1, lat2, lon2) * radius,
        )))
    }
}

/// The central angle between two points, in radians.
fn haversine(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (phi1, phi2) = (lat1.to_radians(), lat2.to_radians());
    let d_phi = (lat2 - lat1).to_radians();
    let d_lambda = (lon2 - lon1).to_radians();
    let a = (d_phi / 2.0).sin().powi(2) + phi1.cos() * phi2.cos() * (d_lambda / 2.0).sin().powi(2);
    2.0 * a.sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn palo_alto_to_london() {
        let km = haversine(37.4439, -122.1663, 51.5257, -0.1122) * EARTH_RADIUS_KM;
        assert!((km - 8634.659796579544).abs() < 1e-6, "{km}");
    }
}
